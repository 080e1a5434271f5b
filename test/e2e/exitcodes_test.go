package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fogdb/fog/internal/cli"
	"github.com/fogdb/fog/internal/devca"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/fogdb/fog/internal/server"
)

// TestCLIExitCodes: the fog binary exits as az does: 0, 1 for an error, 2 for a command line
// it cannot run (with the nearest command), 3 for show of a missing resource.
func TestCLIExitCodes(t *testing.T) {
	f := startFog(t, "")
	run := func(args ...string) (int, string) {
		cmd := exec.Command(fogBinary, args...)
		cmd.Env = append(os.Environ(), "FOG_CONFIG="+filepath.Join(f.dataDir, "client.json"))
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"sql", "mi", "list"}, 0, "["},
		{[]string{"sql", "xyz"}, 2, "'xyz' is misspelled or not recognized"},
		{[]string{"sql", "mi", "lst"}, 2, "Did you mean 'fog sql mi list'?"},
		{[]string{"sql", "mi", "list", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"token", "create"}, 2, `required flag(s) "name" not set`},
		{[]string{"sql", "mi", "show", "-g", "rg-none", "-n", "missing"}, 3, "ResourceNotFound"},
		{[]string{"sql", "mi", "create", "-g", "rg1", "-n", "Bad_Name!", "-l", "eastus", "-u", "fogadmin", "-p", password}, 1, "("},
		{[]string{"sql"}, 0, "Available Commands"},
		{[]string{"sql", "mi", "delete", "-g", "rg-none", "-n", "missing", "--yes"}, 0, ""},
		{[]string{"sql", "instance-failover-group", "create", "-g", "rg-none", "-n", "fg", "--mi", "nope", "--partner-mi", "nope2"}, 1, "the primary managed instance 'nope' was not found in resource group 'rg-none'"},
	} {
		code, out := run(c.args...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("fog %s: exit %d, %q; want exit %d and %q", strings.Join(c.args, " "), code, out, c.code, c.want)
		}
	}
}

// TestHelp: help marks required flags and shows defaults, and the server commands list only
// their own flags.
func TestHelp(t *testing.T) {
	help := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(fogBinary, append(args, "--help")...).CombinedOutput()
		if err != nil {
			t.Fatalf("fog %v --help: %v %s", args, err, out)
		}
		return string(out)
	}
	up := help("up")
	for _, flag := range []string{"--output", "--query", "--subscription", "--config", "--verbose"} {
		if strings.Contains(up, flag) {
			t.Errorf("fog up --help lists the client flag %s", flag)
		}
	}
	if !strings.Contains(up, `--listen string`) || !strings.Contains(up, `(default "127.0.0.1:7443")`) {
		t.Errorf("fog up --help:\n%s", up)
	}
	create := help("sql", "mi", "create")
	for _, w := range []string{"[Required] region", "[Required] administrator login password", "(default 8)", `(default "GeneralPurpose")`, "--only-show-errors", "--debug", `(default "json")`} {
		if !strings.Contains(create, w) {
			t.Errorf("fog sql mi create --help lacks %q", w)
		}
	}
	if strings.Contains(create, "[Required] vCores") {
		t.Error("an optional flag is marked required")
	}
}

// TestStopLeavesNothing: stopping fog stops its PostgreSQL, removes their socket directories
// and says in one last line what it stopped.
func TestStopLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	f := startFog(t, dir)
	f.createInstance("rg-stop", "stop1", "eastus", nil)
	dirs, _ := filepath.Glob(filepath.Join(dir, "regions", "eastus", "*", "pgdata"))
	if len(dirs) != 1 {
		t.Fatalf("data directories: %v", dirs)
	}
	sock := postgres.SocketDirFor(filepath.Base(filepath.Dir(dirs[0])))
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("the running instance's socket directory: %v", err)
	}
	f.stop()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket directory %s after fog stopped: %v", sock, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "fog.log"))
	if !strings.Contains(string(b), `msg="fog stopped"`) {
		t.Error("no final line saying what fog stopped")
	}
}

// TestCLIErrorsPointTheWay: a config whose CA did not sign the API's certificate, and an API
// that does not answer, each get an error that says what is wrong and where to look.
func TestCLIErrorsPointTheWay(t *testing.T) {
	f := startFog(t, "")
	other, err := devca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	write := func(mut func(*server.ClientConfig)) string {
		cc := f.info
		mut(&cc)
		b, _ := json.Marshal(cc)
		p := filepath.Join(t.TempDir(), "client.json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wrongCA := write(func(c *server.ClientConfig) { c.CACert = string(other.CertPEM) })
	var out, errb bytes.Buffer
	err = cli.Run(context.Background(), []string{"--config", wrongCA, "sql", "mi", "list"}, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb})
	if err == nil || !strings.Contains(err.Error(), "is not signed by the CA in "+wrongCA) {
		t.Errorf("wrong CA: %v", err)
	}
	gone := write(func(c *server.ClientConfig) { c.APIURL = "https://127.0.0.1:1" })
	err = cli.Run(context.Background(), []string{"--config", gone, "sql", "mi", "list"}, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb})
	if err == nil || !strings.Contains(err.Error(), "nothing answers at the Fog API https://127.0.0.1:1") || strings.Count(err.Error(), "127.0.0.1:1") != 1 {
		t.Errorf("API down: %v", err)
	}
}

// TestNoWaitAndWait: --no-wait prints the operation and the command that waits for it, and
// that command, run as printed, waits.
func TestNoWaitAndWait(t *testing.T) {
	f := startFog(t, "")
	runCLI := func(args ...string) (string, string) {
		t.Helper()
		out, errOut, err := f.runCLI("", args...)
		if err != nil {
			t.Fatalf("fog %v: %v %s", args, err, errOut)
		}
		return out, errOut
	}
	out, hint := runCLI("sql", "mi", "create", "-g", "rg-w", "-n", "nowait1", "-l", "eastus", "-u", "fogadmin", "-p", password, "--no-wait")
	var op map[string]any
	if err := json.Unmarshal([]byte(out), &op); err != nil || op["operationId"] == "" || op["status"] != "InProgress" {
		t.Fatalf("--no-wait printed %q", out)
	}
	const want = "fog sql mi wait --resource-group rg-w --name nowait1 --created"
	if !strings.Contains(hint, want) {
		t.Fatalf("--no-wait hint %q, want %q", hint, want)
	}
	runCLI(strings.Fields(strings.TrimPrefix(want, "fog "))...)
	if out, _ := runCLI("sql", "mi", "show", "-g", "rg-w", "-n", "nowait1"); !strings.Contains(out, `"state": "Ready"`) {
		t.Errorf("after wait --created: %s", out)
	}
	// A missing partner: the error says where the CLI looked and which flags say so.
	_, _, err := f.runCLI("", "sql", "instance-failover-group", "create", "-g", "rg-w", "-n", "fgw", "--mi", "nowait1", "--partner-mi", "nowhere")
	if err == nil || cli.ExitCode(err) != 1 || !strings.Contains(err.Error(), "the partner managed instance 'nowhere' was not found in resource group 'rg-w' of subscription '") || !strings.Contains(err.Error(), "--partner-resource-group") {
		t.Errorf("group with a missing partner: %v", err)
	}

	// --debug shows the requests and responses, never the token or the password; --verbose
	// one line per request with its time; --only-show-errors nothing on stderr.
	_, dbg := runCLI("sql", "mi", "create", "-g", "rg-w", "-n", "nowait2", "-l", "eastus", "-u", "fogadmin", "-p", password, "--no-wait", "--debug")
	for _, w := range []string{"DEBUG: Request URL: 'PUT https://", "DEBUG: Request header Authorization: *****", `"administratorLoginPassword":"*****"`, "DEBUG: Response header Azure-Asyncoperation: https://", "INFO: PUT /subscriptions/"} {
		if !strings.Contains(dbg, w) {
			t.Errorf("--debug output lacks %q:\n%s", w, dbg)
		}
	}
	if strings.Contains(dbg, password) || strings.Contains(dbg, f.info.Token) {
		t.Errorf("--debug printed a secret:\n%s", dbg)
	}
	// az's --custom: a JMESPath condition on the resource.
	runCLI("sql", "mi", "wait", "-g", "rg-w", "-n", "nowait2", "--custom", "state=='Ready' && provisioningState=='Succeeded'", "--interval", "100ms")
	if out, _ := runCLI("sql", "mi", "show", "-g", "rg-w", "-n", "nowait2", "--query", "state", "-o", "tsv"); out != "Ready\n" {
		t.Errorf("after wait --custom: state %q", out)
	}
	if _, _, err := f.runCLI("", "sql", "mi", "wait", "-g", "rg-w", "-n", "nowait2", "--custom", "state=="); err == nil || cli.ExitCode(err) != 2 {
		t.Errorf("wait --custom with a bad expression: %v", err)
	}
	_, verbose := runCLI("sql", "mi", "list", "--verbose")
	if !regexp.MustCompile(`(?m)^INFO: GET /subscriptions/[^ ]+/providers/Microsoft.Sql/managedInstances\?api-version=[^ ]+: 200 OK in \d+ms$`).MatchString(verbose) || strings.Contains(verbose, "DEBUG") {
		t.Errorf("--verbose printed %q", verbose)
	}
	if _, quiet := runCLI("sql", "mi", "delete", "-g", "rg-w", "-n", "nowait2", "--yes", "--no-wait", "--only-show-errors"); quiet != "" {
		t.Errorf("--only-show-errors still printed %q", quiet)
	}
	_, hint = runCLI("sql", "mi", "delete", "-g", "rg-w", "-n", "nowait1", "--yes", "--no-wait")
	if !strings.Contains(hint, "fog sql mi wait --resource-group rg-w --name nowait1 --deleted") {
		t.Fatalf("delete --no-wait hint %q", hint)
	}
	runCLI("sql", "mi", "wait", "-g", "rg-w", "-n", "nowait1", "--deleted", "--interval", "100ms")
	if _, _, err := f.runCLI("", "sql", "mi", "show", "-g", "rg-w", "-n", "nowait1"); err == nil {
		t.Error("the instance is still there after wait --deleted")
	}
	if _, _, err := f.runCLI("", "sql", "mi", "wait", "-g", "rg-w", "-n", "x"); err == nil || cli.ExitCode(err) != 2 {
		t.Errorf("wait without a condition: %v", err)
	}
}

// TestOutputFormats: az's -o table, tsv, yaml and none, and --query with JMESPath, so that a
// script can take a value without a JSON tool.
func TestOutputFormats(t *testing.T) {
	f := startFog(t, "")
	inst := f.createInstance("rg-o", "out1", "eastus", nil)
	f.createInstance("rg-o", "out2", "eastus", nil)
	run := func(args ...string) string {
		t.Helper()
		out, _, err := f.runCLI("", args...)
		if err != nil {
			t.Fatalf("fog %v: %v", args, err)
		}
		return out
	}
	if got := strings.TrimSpace(run("sql", "mi", "show", "-g", "rg-o", "-n", "out1", "--query", "host", "-o", "tsv")); got != props(inst)["host"] {
		t.Errorf("--query host -o tsv = %q, want %v", got, props(inst)["host"])
	}
	if got := run("sql", "mi", "list", "-g", "rg-o", "--query", "[].name", "-o", "tsv"); got != "out1\nout2\n" && got != "out2\nout1\n" {
		t.Errorf(`--query "[].name" -o tsv = %q`, got)
	}
	table := run("sql", "mi", "list", "-g", "rg-o", "-o", "table")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "Name") || !strings.Contains(lines[0], "ResourceGroup") || !strings.HasPrefix(lines[1], "----") || !strings.Contains(table, "out2") {
		t.Errorf("-o table =\n%s", table)
	}
	if y := run("sql", "mi", "show", "-g", "rg-o", "-n", "out1", "-o", "yaml"); !strings.Contains(y, "name: out1\n") {
		t.Errorf("-o yaml =\n%s", y)
	}
	if got := run("sql", "mi", "show", "-g", "rg-o", "-n", "out1", "-o", "none"); got != "" {
		t.Errorf("-o none = %q", got)
	}
	if got := strings.TrimSpace(run("sql", "mi", "list", "-g", "rg-o", "--query", "length(@)")); got != "2" {
		t.Errorf("--query length(@) = %q", got)
	}
	for _, args := range [][]string{{"sql", "mi", "list", "--query", "[?"}, {"sql", "mi", "list", "-o", "xml"}} {
		if _, _, err := f.runCLI("", args...); err == nil || cli.ExitCode(err) != 2 {
			t.Errorf("fog %v: %v, want a usage error", args, err)
		}
	}
}
