package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVersion: fog version names the commit the binary was built from.
func TestVersion(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skip("not a git checkout:", err)
	}
	bin := filepath.Join(t.TempDir(), "fog")
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "../../cmd/fog").CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, out)
	}
	out, err := exec.Command(bin, "version", "-o", "json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Fog, Commit, GoVersion string }
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if v.Commit != strings.TrimSpace(string(head)) || v.Fog == "" || !strings.HasPrefix(v.GoVersion, "go") {
		t.Fatalf("fog version = %+v, want commit %s", v, head)
	}
	plain, _ := exec.Command(bin, "version").Output()
	if !strings.HasPrefix(string(plain), "fog ") || !strings.Contains(string(plain), v.Commit) {
		t.Errorf("fog version = %q", plain)
	}
}
