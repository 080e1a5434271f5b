package postgres

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestTaggedUsers: users made while UserTagEnv is set carry the tag, and RemoveTaggedUsers
// removes those alone (a test run must not remove the users of another run beside it).
func TestTaggedUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("instance users are made only when fog runs as root")
	}
	_, r := testRunner(context.Background(), t)
	tag := fmt.Sprintf("unit-%d", time.Now().UnixNano())
	t.Setenv(UserTagEnv, tag)
	tagged := "tagged-" + tag
	if _, err := r.ForInstance(tagged); err != nil {
		t.Fatal(err)
	}
	t.Setenv(UserTagEnv, "")
	other := "untagged-" + tag
	if _, err := r.ForInstance(other); err != nil {
		t.Fatal(err)
	}
	defer r.RemoveInstanceUser(other)
	if got := InstanceUsers(tag); !got[InstanceUser(tagged)] || got[InstanceUser(other)] || len(got) != 1 {
		t.Errorf("users tagged %s: %v, want only %s", tag, got, InstanceUser(tagged))
	}
	RemoveTaggedUsers(tag)
	all := InstanceUsers()
	if all[InstanceUser(tagged)] || !all[InstanceUser(other)] {
		t.Errorf("after removing the tagged users: tagged there %v, untagged there %v; want false, true", all[InstanceUser(tagged)], all[InstanceUser(other)])
	}
}
