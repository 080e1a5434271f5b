package agent_test

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/fogdb/fog/internal/agent"
)

// TestBackupRepoFlags: each flag of the repository is checked at start, with an error that
// names it and never quotes the account key.
func TestBackupRepoFlags(t *testing.T) {
	dir := t.TempDir()
	key := base64.StdEncoding.EncodeToString([]byte("a secret account key of 32 bytes"))
	write := func(name, data string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("key", key+"\n", 0o600)
	open := write("key-open", key, 0o644)
	notKey := write("key-bad", "not base64 at all!", 0o600)
	empty := write("key-empty", "\n", 0o600)
	notCA := write("ca-bad", "no certificate here", 0o644)
	azure := []string{"--backup-repo-type", "azure", "--backup-azure-account", "fogwest", "--backup-azure-key-file", good}
	for _, tc := range []struct {
		name string
		args []string
		want string // "" valid, else what the error names
	}{
		{"posix by default", nil, ""},
		{"posix", []string{"--backup-repo-type", "posix"}, ""},
		{"unknown type", []string{"--backup-repo-type", "s3"}, "--backup-repo-type"},
		{"azure flag with posix", []string{"--backup-azure-account", "fogwest"}, "--backup-azure-account"},
		{"azure", azure, ""},
		{"azure on Azurite", append(azure, "--backup-azure-host", "localhost", "--backup-azure-port", "10000"), ""},
		{"no account", []string{"--backup-repo-type", "azure", "--backup-azure-key-file", good}, "--backup-azure-account"},
		{"bad account", []string{"--backup-repo-type", "azure", "--backup-azure-account", "Fog_West", "--backup-azure-key-file", good}, "--backup-azure-account"},
		{"no key file", []string{"--backup-repo-type", "azure", "--backup-azure-account", "fogwest"}, "--backup-azure-key-file"},
		{"missing key file", []string{"--backup-repo-type", "azure", "--backup-azure-account", "fogwest", "--backup-azure-key-file", filepath.Join(dir, "none")}, "--backup-azure-key-file"},
		{"key file others read", []string{"--backup-repo-type", "azure", "--backup-azure-account", "fogwest", "--backup-azure-key-file", open}, "chmod 600"},
		{"not a key", []string{"--backup-repo-type", "azure", "--backup-azure-account", "fogwest", "--backup-azure-key-file", notKey}, "--backup-azure-key-file"},
		{"empty key file", []string{"--backup-repo-type", "azure", "--backup-azure-account", "fogwest", "--backup-azure-key-file", empty}, "--backup-azure-key-file"},
		{"host with a scheme", append(azure, "--backup-azure-host", "https://localhost"), "--backup-azure-host"},
		{"host with a path", append(azure, "--backup-azure-host", "localhost/x"), "--backup-azure-host"},
		{"port", append(azure, "--backup-azure-port", "70000"), "--backup-azure-port"},
		{"CA file without a certificate", append(azure, "--backup-azure-ca-file", notCA), "--backup-azure-ca-file"},
		{"missing CA file", append(azure, "--backup-azure-ca-file", filepath.Join(dir, "none")), "--backup-azure-ca-file"},
		{"prefix with a double hyphen", append(azure, "--backup-azure-container-prefix", "fog--"), "--backup-azure-container-prefix"},
		{"prefix with an underscore", append(azure, "--backup-azure-container-prefix", "fog_"), "--backup-azure-container-prefix"},
		{"prefix too long", append(azure, "--backup-azure-container-prefix", strings.Repeat("a", 30)), "--backup-azure-container-prefix"},
		{"prefix in capitals", append(azure, "--backup-azure-container-prefix", "Backups-"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := agent.Defaults()
			fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
			cfg.RegisterFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate(%v) = %v, want nil", tc.args, err)
				}
				if s := fmt.Sprintf("%+v %#v", cfg, cfg); strings.Contains(s, key) {
					t.Errorf("the configuration printed holds the account key")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate(%v) = %v, want an error naming %s", tc.args, err, tc.want)
			}
			if strings.Contains(err.Error(), key) || strings.Contains(err.Error(), "not base64 at all") {
				t.Errorf("the error quotes the key file's content: %v", err)
			}
		})
	}
}

// TestContainerName: <prefix><region>-<stanza>, valid for Azure, shortened with a hash when
// too long, the same every time.
func TestContainerName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9]([a-z0-9]|-[a-z0-9]){2,62}$`)
	uid := "b7a1c0de-0000-4000-8000-000000000001"
	long := "averyveryverylongregionnamethatneverends"
	for _, tc := range []struct {
		prefix, region, stanza string
		n                      int
		want                   string
	}{
		{"fog-", "eastus", uid, 0, "fog-eastus-" + uid},
		{"fog-", "eastus", uid, 2, "fog-eastus-" + uid + "-2"},
		{"fog-", "East_US", "a--b", 0, "fog-east-us-a-b"},
		{"", "ab", "c", 0, "ab-c"},
		{"", "", "", 0, "000"},
		{"fog-", long, uid + "-1", 0, ""},
	} {
		got := agent.ContainerName(tc.prefix, tc.region, tc.stanza, tc.n)
		if tc.want != "" && got != tc.want {
			t.Errorf("ContainerName(%q, %q, %q, %d) = %q, want %q", tc.prefix, tc.region, tc.stanza, tc.n, got, tc.want)
		}
		if !valid.MatchString(got) {
			t.Errorf("ContainerName(%q, %q, %q, %d) = %q: not a name Azure takes", tc.prefix, tc.region, tc.stanza, tc.n, got)
		}
	}
	a, b := agent.ContainerName("fog-", long, uid+"-1", 0), agent.ContainerName("fog-", long, uid+"-2", 0)
	if a == b || len(a) != 63 || a != agent.ContainerName("fog-", long, uid+"-1", 0) {
		t.Errorf("long names %q and %q: want 63 characters, distinct, the same every time", a, b)
	}
	if !strings.HasPrefix(a, "fog-"+long+"-") {
		t.Errorf("long name %q: want it to keep its start", a)
	}
}
