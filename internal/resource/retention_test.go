package resource

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/fogdb/fog/internal/fault"
)

// retentionBody decodes a policy body as the API does.
func retentionBody(t *testing.T, s string) ShortTermRetentionBody {
	t.Helper()
	var b ShortTermRetentionBody
	if err := json.Unmarshal([]byte(s), &b); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return b
}

// retentionDays takes a whole number of days from 1 to 35; anything else, a number out of
// range or no whole number at all, is Azure's InvalidBackupRetentionPeriod, whose message
// gives the range.
func TestRetentionDays(t *testing.T) {
	for _, tc := range []struct {
		body string
		want int  // 0: refused
		sent bool // for an accepted or absent value
	}{
		{`{"properties":{"retentionDays":1}}`, 1, true},
		{`{"properties":{"retentionDays":7}}`, 7, true},
		{`{"properties":{"retentionDays":35}}`, 35, true},
		{`{"properties":{"retentionDays":0}}`, 0, true},
		{`{"properties":{"retentionDays":36}}`, 0, true},
		{`{"properties":{"retentionDays":-7}}`, 0, true},
		{`{"properties":{"retentionDays":7.5}}`, 0, true},
		{`{"properties":{"retentionDays":7.0}}`, 0, true},
		{`{"properties":{"retentionDays":1e1}}`, 0, true},
		{`{"properties":{"retentionDays":"7"}}`, 0, true},
		{`{"properties":{"retentionDays":true}}`, 0, true},
		{`{"properties":{"retentionDays":[7]}}`, 0, true},
		{`{"properties":{"retentionDays":99999999999999999999}}`, 0, true},
		{`{"properties":{"retentionDays":null}}`, 0, false},
		{`{"properties":{}}`, 0, false},
		{`{}`, 0, false},
	} {
		days, sent, err := retentionBody(t, tc.body).RetentionDays()
		if sent != tc.sent {
			t.Errorf("RetentionDays(%s) sent = %v, want %v", tc.body, sent, tc.sent)
		}
		if tc.want != 0 {
			if err != nil || days != tc.want {
				t.Errorf("RetentionDays(%s) = %d, %v; want %d", tc.body, days, err, tc.want)
			}
			continue
		}
		if !tc.sent {
			if err != nil {
				t.Errorf("RetentionDays(%s) = %v; want no value and no error", tc.body, err)
			}
			continue
		}
		var fe *fault.Error
		if !errors.As(err, &fe) || fe.Code != "InvalidBackupRetentionPeriod" || fe.Class != fault.BadRequest ||
			!strings.Contains(fe.Message, "must be between 1 and 35") {
			t.Errorf("RetentionDays(%s) = %d, %v; want InvalidBackupRetentionPeriod giving the range", tc.body, days, err)
		}
	}
	var fe *fault.Error
	if err := MissingRetentionDays(); !errors.As(err, &fe) || fe.Code != "InvalidBackupRetentionPeriod" || !strings.Contains(fe.Message, "between 1 and 35") {
		t.Errorf("MissingRetentionDays() = %v, want InvalidBackupRetentionPeriod giving the range", err)
	}
}

// An instance keeps the longest retention of its databases, a database without a policy
// counting Azure's default; an instance without databases keeps the default.
func TestInstanceRetentionDays(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dbs      []string
		policies map[string]int
		want     int
	}{
		{"no databases", nil, nil, 7},
		{"no databases, stale policies", nil, map[string]int{"gone": 35}, 7},
		{"no policy", []string{"a", "b"}, nil, 7},
		{"one longer", []string{"a", "b"}, map[string]int{"a": 14}, 14},
		{"shorter, another at the default", []string{"a", "b"}, map[string]int{"a": 1}, 7},
		{"all shorter", []string{"a", "b"}, map[string]int{"a": 1, "b": 3}, 3},
		{"all at the minimum", []string{"a"}, map[string]int{"a": 1}, 1},
		{"a dropped database's policy does not count", []string{"a"}, map[string]int{"a": 2, "gone": 35}, 2},
	} {
		if got := InstanceRetentionDays(tc.dbs, tc.policies); got != tc.want {
			t.Errorf("%s: InstanceRetentionDays(%v, %v) = %d, want %d", tc.name, tc.dbs, tc.policies, got, tc.want)
		}
	}
}

// The one policy is "default": reading another finds nothing, writing one is refused.
func TestShortTermRetentionPolicyName(t *testing.T) {
	if err := ValidateShortTermRetentionPolicyName("default", true); err != nil {
		t.Errorf("write of default: %v", err)
	}
	var fe *fault.Error
	if err := ValidateShortTermRetentionPolicyName("weekly", false); !errors.As(err, &fe) || fe.Class != fault.NotFound || fe.Code != "ResourceNotFound" {
		t.Errorf("read of weekly = %v, want ResourceNotFound", err)
	}
	if err := ValidateShortTermRetentionPolicyName("Default", true); !errors.As(err, &fe) || fe.Class != fault.BadRequest || fe.Code != "InvalidParameterValue" {
		t.Errorf("write of Default = %v, want InvalidParameterValue", err)
	}
}

// A database's name may hold any character PostgreSQL takes; its policy's key stays one
// segment under the instance's prefix.
func TestShortTermRetentionKey(t *testing.T) {
	for _, db := range []string{"sales", "a/b", "Made With SQL", "..", "%2F"} {
		k := ShortTermRetentionKey("uid1", db)
		rest, ok := strings.CutPrefix(k, ShortTermRetentionPrefix("uid1"))
		if !ok || rest == "" || strings.Contains(rest, "/") {
			t.Errorf("ShortTermRetentionKey(uid1, %q) = %q, want one segment under %q", db, k, ShortTermRetentionPrefix("uid1"))
		}
	}
	if ShortTermRetentionKey("u", "a/b") == ShortTermRetentionKey("u", "a%2Fb") {
		t.Error("two database names share a key")
	}
	if strings.HasPrefix(ShortTermRetentionKey("u", "x"), "mi/") {
		t.Error("a policy's key is under mi/, whose every key is an instance record")
	}
}

// FuzzShortTermRetentionBody: any JSON body of a policy's PUT is a whole number of days in
// range, absent, or refused with Azure's code; never a panic.
func FuzzShortTermRetentionBody(f *testing.F) {
	for _, s := range []string{`{"properties":{"retentionDays":14}}`, `{"properties":{"retentionDays":1e400}}`, `{"properties":{"retentionDays":"35"}}`, `{"properties":null}`, `{"properties":{"retentionDays":-0}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var body ShortTermRetentionBody
		if json.Unmarshal(b, &body) != nil {
			return
		}
		days, sent, err := body.RetentionDays()
		var fe *fault.Error
		switch {
		case err != nil && (!errors.As(err, &fe) || fe.Code != "InvalidBackupRetentionPeriod"):
			t.Fatalf("%s: error %v, want InvalidBackupRetentionPeriod", b, err)
		case err == nil && sent && (days < MinRetentionDays || days > MaxRetentionDays):
			t.Fatalf("%s: accepted %d days", b, days)
		}
	})
}
