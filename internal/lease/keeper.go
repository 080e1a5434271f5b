package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fogdb/fog/internal/failpoint"
	"github.com/fogdb/fog/internal/proc"
	"github.com/fogdb/fog/internal/store"
)

// Claim is one instance an agent holds, or must fence, in an epoch.
type Claim struct {
	UID   string
	Epoch int64
	// Key and Rev are the desired state the claim rests on; a renewal holds only while that
	// key is still at Rev.
	Key string
	Rev int64
	// DataDir is the instance's PGDATA, and Server what its postmaster must be, for the
	// guard: postmaster.pid is the instance's OS user's to write, so the guard signals the
	// pid it names only if that process is the instance's server.
	DataDir string
	Server  proc.Want
}

// Demands is what the desired state asks of an agent's leases right now.
type Demands struct {
	// Claims are the instances the store names primary of their current epoch.
	Claims []Claim
	// Fence are the instances that must be stopped at once (a forced failover demoted them).
	Fence []Claim
	// Probes are the agent's looks at its standbys' primaries, published with the lease.
	Probes map[string]Probe
}

// KeeperConfig configures a Keeper.
type KeeperConfig struct {
	Region string
	Timing Timing
	// GuardFile is where the guard reads its deadlines; "" runs no guard.
	GuardFile string
	// GuardCommand starts the guard process (the fog binary and its arguments); nil runs none.
	GuardCommand []string
}

// Keeper renews an agent's lease and fences the agent's primaries when it cannot.
type Keeper struct {
	cfg     KeeperConfig
	st      store.Store
	log     *slog.Logger
	demands func(context.Context) (Demands, error)
	stop    func(ctx context.Context, uid string) error

	mu     sync.Mutex
	lastOK time.Time
	// incarnation is Record.Incarnation: this process's start time, plus one for every
	// lapsed lease renewed.
	incarnation int64
	held        map[string]Claim
	fenced      map[string]int64
	seq         int64
	guard       *exec.Cmd
	wg          sync.WaitGroup
}

// NewKeeper returns a keeper. demands reads the desired state; stop shuts an instance down
// at once (immediate mode) and returns nil when it is not running.
func NewKeeper(cfg KeeperConfig, st store.Store, demands func(context.Context) (Demands, error),
	stop func(ctx context.Context, uid string) error, log *slog.Logger) (*Keeper, error) {
	if err := cfg.Timing.Validate(); err != nil {
		return nil, err
	}
	return &Keeper{cfg: cfg, st: st, log: log, demands: demands, stop: stop, held: map[string]Claim{},
		incarnation: time.Now().UnixNano()}, nil
}

// Incarnation is the incarnation of the lease the agent holds (Record.Incarnation), for the
// observed state it publishes.
func (k *Keeper) Incarnation() int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.incarnation
}

// Timing returns the keeper's lease timing.
func (k *Keeper) Timing() Timing { return k.cfg.Timing }

// Run renews until ctx ends. The check that fences the agent's primaries when renewals stop
// succeeding runs in a loop of its own, so that a renewal hanging on an unreachable store
// cannot hold it up. It returns when both loops have; the caller disarms the guard and stops
// its instances itself on a graceful exit.
func (k *Keeper) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(k.cfg.Timing.Renew / 2)
		defer tick.Stop()
		for {
			k.selfFence(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	defer wg.Wait()
	tick := time.NewTicker(k.cfg.Timing.Renew)
	defer tick.Stop()
	for {
		if err := k.renew(ctx, true); err != nil && ctx.Err() == nil {
			k.log.Warn("lease renewal failed", "region", k.cfg.Region, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Holds reports whether the agent holds uid as primary of epoch now.
func (k *Keeper) Holds(uid string, epoch int64) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.held[uid]
	return ok && c.Epoch == epoch && time.Since(k.lastOK) < k.cfg.Timing.FenceAfter
}

// Acquire renews now and reports whether the agent then holds uid as primary of epoch: the
// gate every start or promotion of a primary passes. The caller holds the instance's lock,
// so this renewal fences nothing (the fence takes that lock too).
func (k *Keeper) Acquire(ctx context.Context, uid string, epoch int64) bool {
	if err := k.renew(ctx, false); err != nil {
		k.log.Warn("lease renewal before taking a primary failed", "uid", uid, "epoch", epoch, "err", err)
	}
	return k.Holds(uid, epoch)
}

// renew fences what must be fenced (when fence is set) and writes the lease, guarded by the
// desired state it read. A conflict means the desired state changed in between: read it
// again. Fences run without k.mu, so that a worker holding an instance's lock can pass the
// gate meanwhile.
func (k *Keeper) renew(ctx context.Context, fence bool) error {
	var err error
	for range 3 {
		err = k.renewOnce(ctx, fence)
		if err == nil || !errors.Is(err, store.ErrConflict) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func (k *Keeper) renewOnce(ctx context.Context, fence bool) error {
	failpoint.Hit(failpoint.AgentStall(k.cfg.Region))
	ctx, cancel := context.WithTimeout(ctx, k.cfg.Timing.StoreTimeout)
	defer cancel()
	sent := time.Now()
	d, err := k.demands(ctx)
	if err != nil {
		return fmt.Errorf("read desired state: %w", err)
	}
	var conds []store.Cond
	fenced := map[string]int64{}
	if fence {
		for _, f := range d.Fence {
			if err := k.stop(ctx, f.UID); err != nil {
				k.log.Error("fence instance", "uid", f.UID, "epoch", f.Epoch, "err", err)
				continue
			}
			fenced[f.UID] = f.Epoch
			conds = append(conds, store.Cond{Key: f.Key, Rev: f.Rev})
		}
	}
	k.mu.Lock()
	if !fence {
		fenced = k.fenced // keep the acknowledgements of the last full renewal
	}
	k.seq++
	inc := k.incarnation
	if !k.lastOK.IsZero() && time.Since(k.lastOK) >= k.cfg.Timing.FenceAfter {
		inc++ // the lease lapsed: selfFence (or the guard) has stopped the primaries since
	}
	rec := Record{Region: k.cfg.Region, Seq: k.seq, Incarnation: inc, Claims: map[string]int64{}, Fenced: fenced, Probes: d.Probes}
	k.mu.Unlock()
	held := map[string]Claim{}
	for _, c := range d.Claims {
		rec.Claims[c.UID] = c.Epoch
		held[c.UID] = c
		conds = append(conds, store.Cond{Key: c.Key, Rev: c.Rev})
	}
	// No lock is held while the store is asked: a hanging store must not hold up selfFence.
	if err := k.st.Txn(ctx, conds, []store.Op{store.PutOp(Key(k.cfg.Region), rec)}); err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if sent.After(k.lastOK) {
		k.lastOK, k.held, k.fenced, k.incarnation = sent, held, fenced, inc
		k.writeGuard(true)
	}
	return nil
}

// selfFence stops every primary the agent held once its lease has run out unrenewed: it can
// no longer know that it is still the primary.
func (k *Keeper) selfFence(ctx context.Context) {
	k.mu.Lock()
	var lost []Claim
	if time.Since(k.lastOK) >= k.cfg.Timing.FenceAfter {
		for _, c := range k.held {
			lost = append(lost, c)
		}
	}
	since := time.Since(k.lastOK)
	k.mu.Unlock()
	for _, c := range lost {
		k.log.Error("lease not renewed in time: fencing the primary (immediate shutdown)", "uid", c.UID, "epoch", c.Epoch,
			"lastRenewal", since.Round(time.Millisecond))
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := k.stop(sctx, c.UID)
		cancel()
		if err != nil {
			k.log.Error("fence after lease loss", "uid", c.UID, "err", err)
			continue
		}
		k.mu.Lock()
		if time.Since(k.lastOK) >= k.cfg.Timing.FenceAfter {
			delete(k.held, c.UID)
		}
		k.mu.Unlock()
	}
}

// GuardState is what the guard process reads.
type GuardState struct {
	// Armed is false after a deliberate stop: the guard exits.
	Armed   bool         `json:"armed"`
	Entries []GuardEntry `json:"entries"`
}

// GuardEntry is one primary the guard fences when its deadline passes.
type GuardEntry struct {
	DataDir string `json:"dataDir"`
	// UID and Exe are what the postmaster must run as and execute (proc.Want).
	UID int    `json:"uid"`
	Exe string `json:"exe"`
	// Deadline is CLOCK_MONOTONIC nanoseconds: the guard runs on the same machine, so the
	// same clock, which no wall-clock step moves.
	Deadline int64 `json:"deadline"`
}

// Monotonic returns CLOCK_MONOTONIC in nanoseconds.
func Monotonic() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

func (k *Keeper) writeGuard(armed bool) {
	if k.cfg.GuardFile == "" {
		return
	}
	deadline := Monotonic() + int64(k.cfg.Timing.FenceAfter-time.Since(k.lastOK))
	gs := GuardState{Armed: armed}
	for _, c := range k.held {
		gs.Entries = append(gs.Entries, GuardEntry{DataDir: c.DataDir, UID: c.Server.UID, Exe: c.Server.Exe, Deadline: deadline})
	}
	b, _ := json.Marshal(gs)
	if err := os.MkdirAll(filepath.Dir(k.cfg.GuardFile), 0o700); err != nil {
		k.log.Error("write guard file", "err", err)
		return
	}
	tmp := k.cfg.GuardFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		k.log.Error("write guard file", "err", err)
		return
	}
	if err := os.Rename(tmp, k.cfg.GuardFile); err != nil {
		k.log.Error("write guard file", "err", err)
		return
	}
	if armed && len(gs.Entries) > 0 {
		k.ensureGuard()
	}
}

// ensureGuard starts the guard process unless one holds the guard's lock.
func (k *Keeper) ensureGuard() {
	if len(k.cfg.GuardCommand) == 0 {
		return
	}
	if k.guard != nil && k.guard.ProcessState == nil && k.guard.Process.Signal(syscall.Signal(0)) == nil {
		return
	}
	if GuardRunning(k.cfg.GuardFile) {
		return
	}
	logf, err := os.OpenFile(k.cfg.GuardFile+".log", os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		k.log.Error("open guard log", "err", err)
		return
	}
	defer logf.Close()
	args := append(append([]string{}, k.cfg.GuardCommand[1:]...), "--file", k.cfg.GuardFile)
	cmd := exec.Command(k.cfg.GuardCommand[0], args...)
	// Its own session: a kill of fog's process group, or a Ctrl-C, does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		k.log.Error("start guard", "err", err)
		return
	}
	k.log.Info("guard started", "pid", cmd.Process.Pid, "file", k.cfg.GuardFile)
	k.guard = cmd
	k.wg.Go(func() { _ = cmd.Wait() })
}

// Disarm tells the guard that the agent stopped on purpose and waits briefly for it to exit.
func (k *Keeper) Disarm() {
	k.mu.Lock()
	k.held = map[string]Claim{}
	k.writeGuard(false)
	g := k.guard
	k.mu.Unlock()
	if g == nil {
		// A guard started by an earlier agent process (one that was killed) reads the
		// disarmed file and exits within its poll interval.
		deadline := time.Now().Add(3 * time.Second)
		for k.cfg.GuardFile != "" && GuardRunning(k.cfg.GuardFile) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		return
	}
	done := make(chan struct{})
	go func() { k.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		_ = g.Process.Kill()
		<-done
	}
}

// GuardRunning reports whether a guard holds the lock of file.
func GuardRunning(file string) bool {
	f, err := os.OpenFile(LockFile(file), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return true
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// LockFile is the guard's lock next to its file.
func LockFile(file string) string { return filepath.Clean(file) + ".lock" }

// Claims returns a copy of what the agent holds now (for status and tests).
func (k *Keeper) Claims() map[string]Claim {
	k.mu.Lock()
	defer k.mu.Unlock()
	return maps.Clone(k.held)
}

// LastRenewal is when the last successful renewal was sent (zero before the first).
func (k *Keeper) LastRenewal() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lastOK
}
