// Package ltr decides long-term retention (LTR) of backups, as Azure SQL Managed Instance
// keeps them: which full backups a database's policy keeps, until when, and which backups of
// a repository may be expired without losing what short-term retention or LTR still needs
// (docs/backups.md). It imports nothing of Fog's: the control plane decides which backups
// are LTR ones (Classify), the agent what to expire (Expire).
package ltr

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Duration is an ISO 8601 duration of whole days, weeks, months or years, as Azure's LTR
// policy properties take them (P12W, P6M, P5Y); zero (PT0S) keeps nothing.
type Duration struct {
	N    int
	Unit byte // 'D', 'W', 'M' or 'Y'
}

// Zero reports whether d keeps nothing.
func (d Duration) Zero() bool { return d.N == 0 }

// String is d as Azure writes it: PT0S when zero.
func (d Duration) String() string {
	if d.N == 0 {
		return "PT0S"
	}
	return fmt.Sprintf("P%d%c", d.N, d.Unit)
}

// After is t plus d, by the calendar (a month from January 31 is March 3 or 2, as AddDate).
func (d Duration) After(t time.Time) time.Time {
	switch d.Unit {
	case 'D':
		return t.AddDate(0, 0, d.N)
	case 'W':
		return t.AddDate(0, 0, 7*d.N)
	case 'M':
		return t.AddDate(0, d.N, 0)
	case 'Y':
		return t.AddDate(d.N, 0, 0)
	}
	return t
}

// days is d's length in days, months counted as 31 and years as 366 (for bounds only).
func (d Duration) days() int {
	switch d.Unit {
	case 'W':
		return 7 * d.N
	case 'M':
		return 31 * d.N
	case 'Y':
		return 366 * d.N
	}
	return d.N
}

// Bounds of a retention that is not zero: at least a week, at most ten years (Azure's).
const (
	MinDays  = 7
	MaxYears = 10
)

var (
	durationRe = regexp.MustCompile(`^P([0-9]{1,5})([DWMY])$`)
	zeroRe     = regexp.MustCompile(`^(PT0+[SMH]|P0+[DWMY])$`)
	// ErrDuration is the cause of a duration ParseDuration refuses.
	ErrDuration = errors.New("not an ISO 8601 duration of whole days, weeks, months or years")
	// ErrRange is the cause of a duration outside MinDays to MaxYears.
	ErrRange = errors.New("outside 1 week to 10 years")
)

// ParseDuration reads an ISO 8601 duration as an LTR policy gives it: P<n>D, P<n>W, P<n>M or
// P<n>Y, or zero (PT0S, P0W, ...); "" is zero too. A duration that is not zero is one week
// (P7D, P1W) to ten years (P3650D, P520W, P120M, P10Y).
func ParseDuration(s string) (Duration, error) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if s == "" || zeroRe.MatchString(s) {
		return Duration{}, nil
	}
	m := durationRe.FindStringSubmatch(s)
	if m == nil {
		return Duration{}, ErrDuration
	}
	n, _ := strconv.Atoi(m[1])
	d := Duration{N: n, Unit: m[2][0]}
	if n == 0 {
		return Duration{}, nil
	}
	limit := map[byte]int{'D': 3650, 'W': 520, 'M': 12 * MaxYears, 'Y': MaxYears}[d.Unit]
	if d.days() < MinDays || n > limit {
		return Duration{}, ErrRange
	}
	return d, nil
}

// Policy is a database's LTR policy.
type Policy struct {
	Weekly, Monthly, Yearly Duration
	// WeekOfYear is the ISO week (1-52) whose backup the yearly retention keeps.
	WeekOfYear int
}

// Off reports whether p keeps nothing.
func (p Policy) Off() bool {
	return p.Weekly.Zero() && p.Monthly.Zero() && (p.Yearly.Zero() || p.WeekOfYear == 0)
}

// Classify is Azure's rule for one new full backup that ended at stop (UTC), the previous
// full backup the database's policy saw having ended at prev (zero: none since the policy
// was set): the first full backup of each ISO week is a weekly backup, kept Weekly; the
// first of each month a monthly one, kept Monthly; the first of ISO week WeekOfYear a yearly
// one, kept Yearly. It returns when the longest of the rules that apply lets it go, and
// false when none keeps it.
func Classify(p Policy, prev, stop time.Time) (time.Time, bool) {
	stop = stop.UTC()
	y, w := stop.ISOWeek()
	firstOfWeek, firstOfMonth := true, true
	if !prev.IsZero() {
		prev = prev.UTC()
		py, pw := prev.ISOWeek()
		firstOfWeek = py != y || pw != w
		firstOfMonth = prev.Year() != stop.Year() || prev.Month() != stop.Month()
	}
	var until time.Time
	keep := func(d Duration, applies bool) {
		if applies && !d.Zero() {
			if t := d.After(stop); t.After(until) {
				until = t
			}
		}
	}
	keep(p.Weekly, firstOfWeek)
	keep(p.Monthly, firstOfMonth)
	keep(p.Yearly, firstOfWeek && w == p.WeekOfYear)
	return until, !until.IsZero()
}

// Keep is a full backup LTR keeps, by its pgBackRest label, until a time.
type Keep struct {
	Label string    `json:"label"`
	Until time.Time `json:"until"`
}

// Backup is a backup of a repository as Expire judges it.
type Backup struct {
	Label string
	// Full: a full backup; else Prior is the full one it builds on (a differential backup),
	// or the backup an incremental one builds on.
	Full  bool
	Prior string
	Stop  time.Time
}

// MaxKeep is the retention-full count Fog's configuration gives pgBackRest, so that
// pgBackRest never expires a full backup on its own (its largest allowed value): Fog runs
// expire itself, with the sets Expire returns.
const MaxKeep = 9999999

// Plan is what to expire in a repository.
type Plan struct {
	// Sets are the backups to expire with `expire --set`, oldest first; a full backup's
	// dependents go with it and are not listed.
	Sets []string
	// ArchiveFulls is how many of the newest full backups keep every WAL segment from their
	// start on (retention-archive-type=full): those short-term retention needs. Older full
	// backups LTR keeps keep only the WAL that makes them consistent. At least 1.
	ArchiveFulls int
}

// Expire decides what to expire among backups at now: short-term retention keeps the newest
// full backup that ended at least days before now, with everything newer, as pgBackRest's
// time-based retention does (every point of the window stays restorable; when no full backup
// is that old, every one is kept). LTR keeps the full backups in keep whose Until is after
// now, without the differential backups built on them (a restore of an LTR backup needs only
// the full one). Everything else is expired.
func Expire(backups []Backup, days int, keep []Keep, now time.Time) Plan {
	byStop := slices.Clone(backups)
	slices.SortStableFunc(byStop, func(a, b Backup) int { return a.Stop.Compare(b.Stop) })
	var fulls []Backup
	for _, b := range byStop {
		if b.Full {
			fulls = append(fulls, b)
		}
	}
	if len(fulls) == 0 {
		return Plan{ArchiveFulls: 1}
	}
	cutoff := now.Add(-time.Duration(days) * 24 * time.Hour)
	first := 0 // the oldest full backup short-term retention needs
	for i, f := range fulls {
		if !f.Stop.After(cutoff) {
			first = i
		}
	}
	str := map[string]bool{}
	for _, f := range fulls[first:] {
		str[f.Label] = true
	}
	ltr := map[string]bool{}
	for _, k := range keep {
		if k.Until.After(now) {
			ltr[k.Label] = true
		}
	}
	// full is the full backup b depends on, following priors (an incremental backup may
	// build on a differential one).
	prior := map[string]string{}
	for _, b := range byStop {
		if !b.Full {
			prior[b.Label] = b.Prior
		}
	}
	full := func(label string) string {
		for i := 0; i < len(prior)+1; i++ {
			p, ok := prior[label]
			if !ok {
				return label
			}
			label = p
		}
		return label
	}
	plan := Plan{ArchiveFulls: len(fulls) - first}
	expired := map[string]bool{}
	for _, b := range byStop {
		f := full(b.Label)
		switch {
		case str[f]:
			continue // short-term retention's chain
		case expired[f] || expired[b.Prior]:
			continue // goes with what it builds on
		case b.Full && !ltr[b.Label]:
		case !b.Full && ltr[f]:
			// A differential backup of an LTR backup outside the window.
		default:
			continue
		}
		expired[b.Label] = true
		plan.Sets = append(plan.Sets, b.Label)
	}
	return plan
}
