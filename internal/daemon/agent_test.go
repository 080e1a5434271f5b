package daemon

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/fogdb/fog/internal/agentapi"
	"github.com/fogdb/fog/internal/cli"
)

// TestAgentNotJoined: `fog agent` with an empty data directory and no join token stops with
// a usage error that says how to get one, before it reaches any server.
func TestAgentNotJoined(t *testing.T) {
	t.Setenv(joinTokenEnv, "")
	var out, errOut bytes.Buffer
	d := &daemon{io: cli.IO{Out: &out, Err: &errOut}}
	cmd := d.agentCommand()
	cmd.SetArgs([]string{"--region", "westus", "--server", "https://127.0.0.1:1", "--advertise", "127.0.0.1", "--data-dir", t.TempDir()})
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err := cmd.ExecuteContext(context.Background())
	var usage *cli.UsageError
	if !errors.As(err, &usage) || !strings.Contains(err.Error(), "argument --join-token: this agent has not joined yet") ||
		!strings.Contains(err.Error(), "fog join-token create --region westus") {
		t.Fatalf("fog agent without credentials or token = %v, want the --join-token usage error", err)
	}
}

// TestJoinErr: the errors of joining are said in the flags' words; others pass unchanged.
func TestJoinErr(t *testing.T) {
	var usage *cli.UsageError
	if err := joinErr(&agentapi.TokenNeededError{Region: "westus"}, "westus"); !errors.As(err, &usage) || !strings.Contains(err.Error(), "$FOG_JOIN_TOKEN") {
		t.Errorf("not joined: %v", err)
	}
	revoked := &agentapi.TokenNeededError{Region: "westus", Revoked: agentapi.ErrRevoked}
	if err := joinErr(revoked, "westus"); errors.As(err, &usage) || !errors.Is(err, agentapi.ErrRevoked) ||
		!strings.HasPrefix(err.Error(), "this agent's certificate was revoked: start it with a new token from `fog join-token create --region westus`") {
		t.Errorf("revoked: %v", err)
	}
	if err := joinErr(&agentapi.WrongRegionError{Region: "eastus", Want: "westus"}, "westus"); !errors.As(err, &usage) ||
		err.Error() != "argument --region: this data directory belongs to an agent of region eastus" {
		t.Errorf("wrong region: %v", err)
	}
	other := errors.New("other")
	if err := joinErr(other, "westus"); err != other {
		t.Errorf("other error: %v", err)
	}
	if err := joinErr(nil, "westus"); err != nil {
		t.Errorf("nil: %v", err)
	}
}
