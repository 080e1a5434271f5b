package ltr

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Duration
		err  error
	}{
		{"PT0S", Duration{}, nil},
		{"", Duration{}, nil},
		{"P0W", Duration{}, nil},
		{"P12W", Duration{12, 'W'}, nil},
		{"p6m", Duration{6, 'M'}, nil},
		{"P5Y", Duration{5, 'Y'}, nil},
		{"P7D", Duration{7, 'D'}, nil},
		{"P520W", Duration{520, 'W'}, nil},
		{"P120M", Duration{120, 'M'}, nil},
		{"P10Y", Duration{10, 'Y'}, nil},
		{"P6D", Duration{}, ErrRange},
		{"P11Y", Duration{}, ErrRange},
		{"P521W", Duration{}, ErrRange},
		{"P121M", Duration{}, ErrRange},
		{"P3651D", Duration{}, ErrRange},
		{"12W", Duration{}, ErrDuration},
		{"P1W2D", Duration{}, ErrDuration},
		{"P-1W", Duration{}, ErrDuration},
		{"PT5H", Duration{}, ErrDuration},
		{"weekly", Duration{}, ErrDuration},
	} {
		got, err := ParseDuration(tc.in)
		if got != tc.want || err != tc.err {
			t.Errorf("ParseDuration(%q) = %v, %v, want %v, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	if s := (Duration{12, 'W'}).String(); s != "P12W" {
		t.Errorf("String = %s", s)
	}
	if s := (Duration{}).String(); s != "PT0S" {
		t.Errorf("String of zero = %s", s)
	}
}

func day(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestClassify runs a policy over a year of backups: a full one every Monday 01:00 (ISO
// weeks start on Mondays) and, in some weeks, a second full one (asked after a failover, say)
// on Thursday.
func TestClassify(t *testing.T) {
	p := Policy{Weekly: Duration{4, 'W'}, Monthly: Duration{12, 'M'}, Yearly: Duration{5, 'Y'}, WeekOfYear: 10}
	var prev time.Time
	weekly, monthly, yearly := 0, 0, 0
	start := day("2025-01-06 01:00") // a Monday, ISO week 2 of 2025
	for w := 0; w < 52; w++ {
		monday := start.AddDate(0, 0, 7*w)
		fulls := []time.Time{monday}
		if w%3 == 0 {
			fulls = append(fulls, monday.AddDate(0, 0, 3))
		}
		for i, stop := range fulls {
			until, ok := Classify(p, prev, stop)
			_, week := stop.ISOWeek()
			firstOfMonth := prev.IsZero() || prev.Month() != stop.Month()
			switch {
			case i > 0 && !firstOfMonth:
				if ok {
					t.Errorf("%s, the week's second full backup, kept until %s", stop, until)
				}
			case week == 10:
				yearly++
				if want := stop.AddDate(5, 0, 0); until != want {
					t.Errorf("%s, week 10's: until %s, want %s", stop, until, want)
				}
			case firstOfMonth:
				monthly++
				if want := stop.AddDate(0, 12, 0); until != want {
					t.Errorf("%s, the month's first: until %s, want %s", stop, until, want)
				}
			default:
				weekly++
				if want := stop.AddDate(0, 0, 28); !ok || until != want {
					t.Errorf("%s, the week's first: until %s %v, want %s", stop, until, ok, want)
				}
			}
			prev = stop
		}
	}
	// 2025's twelve months: March's first full backup is week 10's (yearly), and October's
	// is Thursday October 2 (the week's second, kept as the month's first), so Monday
	// October 6 is a weekly one; 52 Mondays, 10 of them a month's first and 1 week 10's.
	if yearly != 1 || monthly != 12 || weekly != 41 {
		t.Errorf("yearly, monthly, weekly = %d, %d, %d; want 1, 12, 41", yearly, monthly, weekly)
	}

	// Rules that are off keep nothing; a policy keeps from the first backup after it is set.
	for _, tc := range []struct {
		name string
		p    Policy
		prev time.Time
		stop time.Time
		want time.Time
	}{
		{"off", Policy{}, time.Time{}, day("2025-03-02 01:00"), time.Time{}},
		{"the first since the policy", Policy{Weekly: Duration{2, 'W'}}, time.Time{}, day("2025-03-05 01:00"), day("2025-03-19 01:00")},
		{"same week", Policy{Weekly: Duration{2, 'W'}}, day("2025-03-03 01:00"), day("2025-03-05 01:00"), time.Time{}},
		{"next week", Policy{Weekly: Duration{2, 'W'}}, day("2025-03-05 01:00"), day("2025-03-10 00:30"), day("2025-03-24 00:30")},
		{"monthly only, same month", Policy{Monthly: Duration{1, 'M'}}, day("2025-03-02 01:00"), day("2025-03-09 01:00"), time.Time{}},
		{"monthly only, new month", Policy{Monthly: Duration{1, 'M'}}, day("2025-03-30 01:00"), day("2025-04-06 01:00"), day("2025-05-06 01:00")},
		{"yearly only, other week", Policy{Yearly: Duration{1, 'Y'}, WeekOfYear: 20}, day("2025-03-02 01:00"), day("2025-03-09 01:00"), time.Time{}},
		{"longest rule wins", Policy{Weekly: Duration{10, 'Y'}, Monthly: Duration{1, 'M'}}, day("2025-03-30 01:00"), day("2025-04-06 01:00"), day("2035-04-06 01:00")},
	} {
		got, ok := Classify(tc.p, tc.prev, tc.stop)
		if got != tc.want || ok != !tc.want.IsZero() {
			t.Errorf("%s: Classify = %s %v, want %s", tc.name, got, ok, tc.want)
		}
	}
}

// weeks is a repository of n weeks of Fog's schedule ending at end: a full backup each
// Sunday 01:00 and a differential one each other day at 01:00.
func weeks(n int, end time.Time) []Backup {
	var out []Backup
	full := ""
	for d := n * 7; d >= 0; d-- {
		at := end.AddDate(0, 0, -d)
		label := at.Format("20060102-150405") + "F"
		if at.Weekday() == time.Sunday || full == "" {
			full = label
			out = append(out, Backup{Label: label, Full: true, Stop: at})
			continue
		}
		out = append(out, Backup{Label: full + "_" + at.Format("20060102-150405") + "D", Prior: full, Stop: at})
	}
	return out
}

func TestExpire(t *testing.T) {
	end := day("2025-06-01 01:00") // a Sunday
	repo := weeks(20, end)
	fullOf := func(d string) string { return day(d).Format("20060102-150405") + "F" }
	diffOf := func(f, d string) string { return fullOf(f) + "_" + day(d).Format("20060102-150405") + "D" }
	fullsBefore := func(s string) []string {
		var out []string
		for _, b := range repo {
			if b.Full && b.Stop.Before(day(s)) {
				out = append(out, b.Label)
			}
		}
		return out
	}
	ltrDiffs := func(f string) []string {
		var out []string
		for _, b := range repo {
			if b.Prior == fullOf(f) {
				out = append(out, b.Label)
			}
		}
		return out
	}
	without := func(all []string, drop ...string) []string {
		return slices.DeleteFunc(slices.Clone(all), func(s string) bool { return slices.Contains(drop, s) })
	}
	now := day("2025-06-02 12:00")
	for _, tc := range []struct {
		name  string
		repo  []Backup
		days  int
		keep  []Keep
		now   time.Time
		sets  []string
		fulls int
	}{
		{"empty", nil, 7, nil, now, nil, 1},
		{"7 days: the full backup 8 days back and newer stay", repo, 7, nil, now,
			fullsBefore("2025-05-25 00:00"), 2},
		{"1 day: only the newest full backup's chain", repo, 1, nil, now,
			fullsBefore("2025-06-01 00:00"), 1},
		{"35 days", repo, 35, nil, now, fullsBefore("2025-04-27 00:00"), 6},
		{"a window longer than the history keeps everything", repo, 400, nil, now, nil, 21},
		{"a window just past a full backup's end keeps it", repo, 7, nil, day("2025-06-01 01:00"),
			fullsBefore("2025-05-25 00:00"), 2},
		{"an LTR backup stays, its differential backups go", repo, 7,
			[]Keep{{fullOf("2025-03-02 01:00"), day("2025-07-01 00:00")}}, now,
			append(without(fullsBefore("2025-05-25 00:00"), fullOf("2025-03-02 01:00")), ltrDiffs("2025-03-02 01:00")...), 2},
		{"an LTR backup whose time passed goes", repo, 7,
			[]Keep{{fullOf("2025-03-02 01:00"), day("2025-06-02 11:59")}}, now,
			fullsBefore("2025-05-25 00:00"), 2},
		{"an LTR backup inside the window keeps its differential backups", repo, 7,
			[]Keep{{fullOf("2025-05-25 01:00"), day("2026-01-01 00:00")}}, now,
			fullsBefore("2025-05-25 00:00"), 2},
		{"unknown labels are ignored", repo, 7,
			[]Keep{{"20990101-000000F", day("2099-01-01 00:00")}}, now,
			fullsBefore("2025-05-25 00:00"), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Expire(tc.repo, tc.days, tc.keep, tc.now)
			want := tc.sets
			// Expire lists sets oldest first, by their end.
			order := map[string]time.Time{}
			for _, b := range tc.repo {
				order[b.Label] = b.Stop
			}
			slices.SortStableFunc(want, func(a, b string) int { return order[a].Compare(order[b]) })
			if diff := cmp.Diff(want, got.Sets); diff != "" {
				t.Errorf("Expire sets (-want +got):\n%s", diff)
			}
			if got.ArchiveFulls != tc.fulls {
				t.Errorf("Expire ArchiveFulls = %d, want %d", got.ArchiveFulls, tc.fulls)
			}
		})
	}
	_ = diffOf
}

// TestExpireNeverLosesTheWindow: over many weeks of a simulated schedule with policies and
// windows, every time in the short-term window stays restorable (a full backup that ended
// before it is kept), the newest full backup is never expired, and every LTR backup whose
// time has not passed is kept.
func TestExpireNeverLosesTheWindow(t *testing.T) {
	for _, days := range []int{1, 7, 14, 35} {
		for _, p := range []Policy{{}, {Weekly: Duration{3, 'W'}}, {Monthly: Duration{2, 'M'}, Yearly: Duration{1, 'Y'}, WeekOfYear: 20}} {
			t.Run(fmt.Sprintf("%d days %+v", days, p), func(t *testing.T) {
				var repo []Backup
				var keep []Keep
				var prev time.Time
				full := ""
				start := day("2025-01-05 01:00")
				for d := 0; d < 400; d++ {
					now := start.AddDate(0, 0, d)
					if now.Weekday() == time.Sunday || full == "" {
						full = now.Format("20060102-150405") + "F"
						repo = append(repo, Backup{Label: full, Full: true, Stop: now})
						if until, ok := Classify(p, prev, now); ok {
							keep = append(keep, Keep{full, until})
						}
						prev = now
					} else {
						repo = append(repo, Backup{Label: full + "_" + now.Format("20060102") + "D", Prior: full, Stop: now})
					}
					plan := Expire(repo, days, keep, now.Add(time.Hour))
					gone := map[string]bool{}
					for _, s := range plan.Sets {
						gone[s] = true
					}
					var left []Backup
					for _, b := range repo {
						if !gone[b.Label] && !gone[b.Prior] {
							left = append(left, b)
						}
					}
					if gone[full] {
						t.Fatalf("day %d: the newest full backup %s expired", d, full)
					}
					window := now.Add(time.Hour).AddDate(0, 0, -days)
					covered := false
					fulls := 0
					for _, b := range left {
						if b.Full && (!b.Stop.After(window) || b.Stop == repo[0].Stop) {
							covered = true
						}
						if b.Full && !b.Stop.Before(window) {
							fulls++
						}
					}
					if !covered {
						t.Fatalf("day %d: no full backup left ends before the window's start %s", d, window)
					}
					for _, k := range keep {
						if k.Until.After(now.Add(time.Hour)) && gone[k.Label] {
							t.Fatalf("day %d: LTR backup %s expired before %s", d, k.Label, k.Until)
						}
					}
					if plan.ArchiveFulls < fulls {
						t.Fatalf("day %d: ArchiveFulls %d, but %d full backups are in the window", d, plan.ArchiveFulls, fulls)
					}
					repo = left
				}
				if p.Off() {
					if len(keep) != 0 {
						t.Errorf("a policy that is off kept %d backups", len(keep))
					}
				} else if len(keep) == 0 {
					t.Errorf("policy %+v kept nothing", p)
				}
			})
		}
	}
}
