package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/fogdb/fog/internal/failpoint"
	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/store"
)

// Steps an operation records (Operation.Step). The names are stored: operations in flight
// across an upgrade resume from them, so they never change.
const (
	StepAccepted   = ""
	StepFenced     = "fenced"
	StepPromoting  = "promoting"
	StepRouted     = "routed"
	StepRejoining  = "rejoining"
	StepSeeding    = "seeding"
	StepLeaving    = "leaving"
	StepRolledBack = "rolledBack"
)

// OnFail is what a step that cannot complete does.
type OnFail int

const (
	// Fail: nothing the operation changed needs undoing; it fails with the step's reason.
	Fail OnFail = iota
	// RollBack: the table's rollback undoes what the operation did: a failover's restores the
	// old primary in a new epoch, unless the target did become primary after all (then the
	// operation goes on); an instance create's removes the instance.
	RollBack
	// GoOn: the roles have changed; the step warns and the operation goes on.
	GoOn
)

// A Step is one row of an operation's table. Reaching it is one store transaction that
// writes its effect and the record of reaching it (the operation's Step); the runner then
// waits at it for what it waits for, and moves to the next.
type Step struct {
	// Name is the step as recorded; "" is the operation as the API accepted it.
	Name string
	// Writes, Waits and RollsBack are the table's columns: what reaching the step writes,
	// what the runner waits for (and does) at it, and what failing there does.
	Writes, Waits, RollsBack string
	// OnFail is what RollsBack says.
	OnFail OnFail
	// Point is the failpoint hit once the step is recorded (for the first step, which the API
	// records, when the runner begins it); Waited and WaitedPoint are the timeline mark and
	// the failpoint once its wait is over.
	Point, Waited, WaitedPoint string

	// write is the step's effect, applied to the group and the next record in the
	// transaction that reaches the step; enter replaces it for a step whose transaction is
	// not the group's alone. entered runs once it is written.
	write   func(x *exec, g *FailoverGroup, next *Operation)
	enter   func(ctx context.Context, x *exec) error
	entered func(x *exec)
	// wait does what the step waits for; an error from giveUp fails the step as OnFail
	// says, any other ends the operation with it.
	wait func(ctx context.Context, x *exec) error
}

// A Table is the steps of one operation kind, in order. The operation succeeds when the last
// step's wait is over.
type Table struct {
	Kind  string
	Steps []Step
	// goneDone: a group record that is gone means the operation is done (a delete).
	goneDone bool
	// RolledBack is the step the table's rollback records when the rollback has more to wait
	// for (nil: none, the operation has failed once rolledBack is recorded). The runner
	// resumes it like any other; once its wait is over the operation fails with the
	// recorded reason.
	RolledBack *Step
	// rollback is what a RollBack step that cannot complete does: it either records the
	// step rolledBack, with the reason, and returns goOn (the runner goes on from the
	// recorded step), or returns the operation's outcome.
	rollback func(x *exec, ctx context.Context, reason error) (goOn bool, err error)
}

// Tables are the operation kinds the engine runs: every kind but an update of a failover
// group, which ends in the transaction that accepts it.
var Tables = []*Table{plannedFailover, forcedFailover, createGroup, deleteGroup,
	putInstance, deleteInstance, putDatabase, deleteDatabase, restoreDatabase}

// TableOf returns the table of kind, or nil.
func TableOf(kind string) *Table {
	for _, t := range Tables {
		if t.Kind == kind {
			return t
		}
	}
	return nil
}

func (t *Table) index(step string) int {
	for i, s := range t.Steps {
		if s.Name == step {
			return i
		}
	}
	return -1
}

// exec is one run of an operation: the record, for a failover group's operation the group
// and both sides' observed state as read at the start of the current step, and what a
// step's wait found for the next step's effect.
type exec struct {
	e  *Engine
	op *Operation
	g  FailoverGroup
	// nw is the side the operation makes primary, ow the side it demotes: from the record,
	// never from the group's current primary (after a crash the group may already name the
	// target).
	nw, ow GroupSide
	st     [2]instance.Status

	seeded       int64  // the old primary's seed generation, kept for it as a standby
	drainedLSN   string // where the drained old primary's WAL ends
	promotedFrom string // where the forced failover's new primary was promoted from
}

func (x *exec) load(ctx context.Context) error {
	var g FailoverGroup
	if _, err := store.Get(ctx, x.e.st, group.Key(x.op.ResourceID), &g); err != nil {
		return err
	}
	x.g, x.nw, x.ow, x.st = g, g.Sides[x.op.Target], g.Sides[1-x.op.Target], x.e.Statuses(ctx, &g)
	return nil
}

// gaveUp is a step's reason to fail as its OnFail says.
type gaveUp struct{ reason error }

func (g *gaveUp) Error() string { return g.reason.Error() }
func (g *gaveUp) Unwrap() error { return g.reason }

func giveUp(reason error) error { return &gaveUp{reason} }

// Run runs op from its recorded step to its end, by its kind's table, and returns its
// outcome: nil for success, the reason it failed (as the client is told it), or, when fog
// is stopping, an error after which the operation stays InProgress and resumes.
func (e *Engine) Run(ctx context.Context, op *Operation) error {
	t := TableOf(op.Kind)
	if t == nil {
		return Internal(fmt.Errorf("unknown operation kind %q", op.Kind))
	}
	x := &exec{e: e, op: op}
	for {
		if op.Step == StepRolledBack {
			if t.RolledBack != nil {
				if err := t.RolledBack.wait(ctx, x); err != nil {
					return err
				}
			}
			return op.reason() // as it was recorded, for the operation's record
		}
		i := t.index(op.Step)
		if i < 0 {
			return Internal(fmt.Errorf("unknown step %q", op.Step))
		}
		s := &t.Steps[i]
		// A failover group's step reads the group and its sides first; an instance's or a
		// database's step reads what it looks at in its wait.
		if op.GroupOp() {
			if err := x.load(ctx); err != nil {
				if t.goneDone && errors.Is(err, store.ErrNotFound) {
					return nil
				}
				return Internal(err)
			}
		}
		if i == 0 && s.Point != "" {
			failpoint.Hit(s.Point)
		}
		if err := s.wait(ctx, x); err != nil {
			var g *gaveUp
			if !errors.As(err, &g) {
				return err
			}
			if stopping(ctx) {
				return errStopping
			}
			if s.OnFail != RollBack {
				return g.reason
			}
			if goOn, err := t.rollback(x, ctx, g.reason); !goOn {
				return err
			}
			continue
		}
		if s.Waited != "" {
			op.Mark(s.Waited)
		}
		if s.WaitedPoint != "" {
			failpoint.Hit(s.WaitedPoint)
		}
		if i == len(t.Steps)-1 {
			return nil
		}
		next := &t.Steps[i+1]
		var err error
		if next.enter != nil {
			err = next.enter(ctx, x)
		} else {
			_, err = e.advance(ctx, op, func(g *FailoverGroup, rec *Operation) {
				next.write(x, g, rec)
				rec.Step = next.Name
			})
		}
		if err != nil {
			return Internal(err)
		}
		if next.entered != nil {
			next.entered(x)
		}
		if next.Point != "" {
			failpoint.Hit(next.Point)
		}
	}
}

// Doc renders the table as the package documentation shows it.
func (t *Table) Doc() string {
	widths := []int{12, 47, 30}
	var b strings.Builder
	row := func(cells ...string) {
		var cols [][]string
		n := 0
		for i, c := range cells {
			w := 30
			if i < len(widths) {
				w = widths[i] - 2
			}
			lines := wrap(c, w)
			cols = append(cols, lines)
			n = max(n, len(lines))
		}
		for l := range n {
			var line strings.Builder
			for i, col := range cols {
				cell := ""
				if l < len(col) {
					cell = col[l]
				}
				if i < len(widths) {
					fmt.Fprintf(&line, "%-*s", widths[i], cell)
				} else {
					line.WriteString(cell)
				}
			}
			b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
		}
	}
	row("step", "written in the transaction", "resume from here", "roll back from here")
	steps := t.Steps
	if t.RolledBack != nil {
		steps = append(steps[:len(steps):len(steps)], *t.RolledBack)
	}
	for _, s := range steps {
		name := s.Name
		if name == "" {
			name = "(accepted)"
		}
		row(name, s.Writes, s.Waits, s.RollsBack)
	}
	return b.String()
}

// wrap breaks s into lines of at most w characters at spaces.
func wrap(s string, w int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) <= w:
			line += " " + word
		default:
			lines = append(lines, line)
			line = word
		}
	}
	return append(lines, line)
}
