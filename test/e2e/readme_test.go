package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/freeport"
)

// readmeBlock is one ```sh block of README.md: the heading it sits under and its commands.
type readmeBlock struct {
	heading string
	cmds    []readmeCmd
}

// readmeCmd is one command of a block, continuation lines joined, with its README line.
type readmeCmd struct {
	line int
	text string
}

// readmeBlocks extracts the shell blocks of README.md.
func readmeBlocks(t *testing.T, path string) []readmeBlock {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []readmeBlock
	heading := ""
	var cur *readmeBlock
	var pending *readmeCmd
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "#"):
			heading = strings.TrimSpace(strings.TrimLeft(line, "#"))
		case cur == nil && strings.TrimSpace(line) == "```sh":
			cur = &readmeBlock{heading: heading}
		case cur != nil && strings.TrimSpace(line) == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			if pending != nil {
				pending.text += "\n" + line
			} else if strings.TrimSpace(line) != "" && !strings.HasPrefix(strings.TrimSpace(line), "#") {
				pending = &readmeCmd{line: n, text: line}
			}
			if pending != nil && !strings.HasSuffix(line, "\\") {
				cur.cmds = append(cur.cmds, *pending)
				pending = nil
			}
		}
	}
	return blocks
}

// daemons are the README's commands that run until stopped ("in a terminal of its own"), each
// with what it prints once it serves.
var daemons = []struct {
	re    *regexp.Regexp
	ready string
}{
	{regexp.MustCompile(`^(go run \./cmd/fog|fog) (up|server)\b`), "Fog API: "},
	{regexp.MustCompile(`^fog agent\b`), "Fog agent of "},
	{regexp.MustCompile(`^etcd\b`), "ready to serve client requests"},
}

// ownSuite: the README's commands that run this test suite; the test does not run itself.
var ownSuite = regexp.MustCompile(`^(\w+=\S+ )*go test\b`)

// TestREADME runs README.md's shell blocks, extracted from the file itself so that it cannot
// drift, in order, in one shell, against a fresh `go run ./cmd/fog up` in a temporary
// directory that links to this module's sources: the quick start, the CLI walkthrough, the
// failover groups, Fog on several machines (etcd, two servers, two agents, then the
// walkthrough again against them, as the README says), the activity log and roles. Commands
// that serve (fog up, fog server, fog agent, etcd) start in the background, as in a terminal
// of their own, and the next command runs once they print that they serve; `go test` lines
// are this suite and are not run. Fixed ports (7443, 7444, 2379, 2380) and fog up's
// addresses are moved to free ones, so the test runs beside a `fog up` of the reader's own.
// Every command must succeed; at the end fog up is stopped with SIGINT, as Ctrl-C, and must
// say that it stopped.
func TestREADME(t *testing.T) {
	for _, tool := range []string{"psql", "bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install postgresql-client %s)", tool, tool)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(t, filepath.Join(root, "README.md"))
	work := t.TempDir()
	for _, f := range []string{"go.mod", "go.sum", "cmd", "internal"} {
		if err := os.Symlink(filepath.Join(root, f), filepath.Join(work, f)); err != nil {
			t.Fatal(err)
		}
	}
	// Six distinct free ports: the four the README fixes, and fog up's API and DNS.
	free := freeLoopbackPorts(t, 6)
	ports := map[string]string{}
	for i, p := range []string{"7443", "7444", "2379", "2380"} {
		ports[p] = strconv.Itoa(free[i])
	}
	relocate := func(s string) string {
		for from, to := range ports {
			s = regexp.MustCompile(`\b`+from+`\b`).ReplaceAllString(s, to)
		}
		return s
	}
	upFlags := fmt.Sprintf(" --listen 127.0.0.1:%d --dns-listen 127.0.0.1:%d --address-base %s", free[4], free[5], addressBase())

	var script strings.Builder
	script.WriteString(readmePrelude)
	emit := func(b readmeBlock) {
		for _, c := range b.cmds {
			text := relocate(c.text)
			fmt.Fprintf(&script, "echo %s >&2\n", shellQuote(fmt.Sprintf("+ README.md:%d: %s", c.line, strings.SplitN(text, "\n", 2)[0])))
			if ownSuite.MatchString(text) {
				script.WriteString("echo '  (this test suite: not run)' >&2\n")
				continue
			}
			daemon := false
			for i, d := range daemons {
				if d.re.MatchString(text) {
					if strings.Contains(text, " up") && i == 0 {
						text = strings.Replace(text, " up", " up"+upFlags, 1)
					}
					fmt.Fprintf(&script, "bg_start %s %s\n", shellQuote(d.ready), shellQuote(text))
					daemon = true
				}
			}
			if !daemon {
				script.WriteString(text + "\n")
			}
		}
	}
	var walkthrough []readmeBlock
	ran := map[string]bool{}
	_, etcdErr := exec.LookPath("etcd")
	for _, b := range blocks {
		switch {
		case b.heading == "CLI walkthrough" || b.heading == "Failover groups":
			walkthrough = append(walkthrough, b)
			emit(b)
		case b.heading == "Fog on several machines" && etcdErr != nil:
			t.Logf("etcd is not installed: the several-machines block is not run (apt-get install etcd-server)")
		case b.heading == "Fog on several machines":
			// Its terminals and its FOG_CONFIG are its own: a subshell, stopped at its end.
			script.WriteString("(\nBGPIDS=()\ntrap bg_stop EXIT\n")
			emit(b)
			script.WriteString("echo '+ the CLI walkthrough again, against the servers and agents' >&2\n")
			for _, w := range walkthrough {
				emit(w)
			}
			script.WriteString(")\n")
		default:
			emit(b)
		}
		ran[b.heading] = true
	}
	for _, h := range []string{"Quick start", "CLI walkthrough", "Failover groups", "Fog on several machines", "Activity log", "Roles and tenants"} {
		if !ran[h] {
			t.Errorf("README.md has no shell block under %q any more: update this test", h)
		}
	}
	script.WriteString("bg_stop\necho README-DONE >&2\n")
	if err := os.WriteFile(filepath.Join(work, "readme.sh"), []byte(script.String()), 0o755); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "readme.sh")
	cmd.Dir = work
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "FOG_CONFIG=") && !strings.HasPrefix(e, "PGPASSWORD=") {
			env = append(env, e)
		}
	}
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) }
	cmd.WaitDelay = 30 * time.Second
	var out bytes.Buffer
	var w io.Writer = &out
	if testing.Verbose() {
		w = io.MultiWriter(&out, os.Stderr)
	}
	cmd.Stdout, cmd.Stderr = w, w
	start := time.Now()
	err = cmd.Run()
	t.Cleanup(func() {
		if pids := leftovers(work); len(pids) > 0 {
			t.Errorf("processes left running after the README's servers stopped: %v", pids)
		}
	})
	if err != nil || !strings.Contains(out.String(), "README-DONE") {
		t.Fatalf("the README's commands failed (%v) after %s:\n%s", err, time.Since(start).Round(time.Second), tail(out.String(), 120))
	}
	t.Logf("README.md ran as written in %s", time.Since(start).Round(time.Second))
	for _, want := range []string{"pg_is_in_recovery", "msg=\"fog stopped\""} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the README run never printed %q", want)
		}
	}
	for _, f := range []string{"bin/fog", ".fog/client.json", "srv1/client.json"} {
		if _, err := os.Stat(filepath.Join(work, f)); err != nil && (f != "srv1/client.json" || etcdErr == nil) {
			t.Errorf("after the README: %v", err)
		}
	}
}

// readmePrelude starts the README's servers in the background, waits for them to say they
// serve, and stops them with SIGINT to each process they started (go run's child too).
const readmePrelude = `set -eo pipefail
BGPIDS=()
n=0
bg_start() { # bg_start READY COMMAND
	n=$((n+1)); local log="bg$n.log"
	( eval "$2" ) >"$log" 2>&1 &
	BGPIDS+=($!)
	for i in $(seq 1800); do
		if grep -q -- "$1" "$log"; then return 0; fi
		if ! kill -0 $! 2>/dev/null; then echo "exited: $2" >&2; cat "$log" >&2; return 1; fi
		sleep 0.1
	done
	echo "never said '$1': $2" >&2; cat "$log" >&2; return 1
}
signal_tree() { # signal_tree SIG PID: the process and everything it started, as Ctrl-C in its terminal
	local c
	for c in $(pgrep -P "$2"); do signal_tree "$1" "$c"; done
	kill -"$1" "$2" 2>/dev/null || true
}
bg_stop() {
	local p
	for (( i=${#BGPIDS[@]}-1; i>=0; i-- )); do
		p=${BGPIDS[$i]}
		signal_tree INT "$p"
		wait "$p" || true
	done
	BGPIDS=()
	cat bg*.log >&2 2>/dev/null | grep -E 'fog stopped|level=ERROR' >&2 || true
}
trap 'echo "FAILED at the command above (exit $?)" >&2; bg_stop' ERR
`

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func freeLoopbackPorts(t *testing.T, n int) []int {
	t.Helper()
	ports, err := freeport.Ports(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}
