package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fogdb/fog/internal/engine"
	fgroup "github.com/fogdb/fog/internal/group"
	finstance "github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgbackrest"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/server"
	"github.com/fogdb/fog/internal/store"
	"github.com/fogdb/fog/internal/store/storetest"
)

// backupFog is an in-process Fog whose state is in a one-member etcd that the benchmark
// reads and writes too: it asks for a backup as the leader's scheduler does (the engine's
// AskBackup, one transaction writing the instance's record and desired state) and reads the
// agent's observed state to see it done. The scheduler itself asks only by the clock (weekly
// full, daily differential), which a benchmark cannot wait for.
type backupFog struct {
	*fog
	etcd *storetest.EtcdCluster
	st   store.Store
	eng  *engine.Engine
	dir  string
}

func startBackupFog(ctx context.Context, base string) (*backupFog, error) {
	dir, err := os.MkdirTemp("", "fog-bench-etcd-")
	if err != nil {
		return nil, err
	}
	etcd, err := storetest.NewEtcd(dir, 1)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cfg := store.EtcdConfig{Endpoints: etcd.Endpoints()}
	f, err := startFog(ctx, base, func(c *server.Config) { c.Etcd = &cfg })
	if err != nil {
		etcd.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	st, err := store.OpenEtcd(ctx, cfg)
	if err != nil {
		f.stop()
		etcd.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	eng := engine.New(engine.Config{DNSSuffix: finstance.DefaultDNSSuffix}, st, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return &backupFog{fog: f, etcd: etcd, st: st, eng: eng, dir: dir}, nil
}

func (b *backupFog) close() {
	b.fog.stop()
	b.st.Close()
	b.etcd.Close()
	os.RemoveAll(b.dir)
}

// record reads instance rg/name's record and its revision.
func (b *backupFog) record(ctx context.Context, rg, name string) (resource.ManagedInstance, int64, error) {
	var m resource.ManagedInstance
	rev, err := store.Get(ctx, b.st, fgroup.InstanceKey(sub, rg, name), &m)
	return m, rev, err
}

// observed reads the backup status the instance's agent last published.
func (b *backupFog) observed(ctx context.Context, m resource.ManagedInstance) (*finstance.BackupStatus, error) {
	var st finstance.Status
	if _, err := store.Get(ctx, b.st, finstance.StatusKey(m.Location, m.UID), &st); err != nil {
		return nil, err
	}
	if st.Backup == nil {
		return &finstance.BackupStatus{}, nil
	}
	return st.Backup, nil
}

// askBackup asks for a backup of typ of instance rg/name as the scheduler does and returns
// its sequence number.
func (b *backupFog) askBackup(ctx context.Context, rg, name, typ string) (int64, error) {
	for {
		m, rev, err := b.record(ctx, rg, name)
		if err != nil {
			return 0, err
		}
		bs, err := b.observed(ctx, m)
		if err != nil {
			return 0, err
		}
		seq := max(m.BackupSeq, bs.Seq) + 1
		err = b.eng.AskBackup(ctx, fgroup.InstanceKey(sub, rg, name), rev, seq, typ, time.Now())
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		return seq, err
	}
}

// waitBackup waits until the agent reports backup seq done and the repository listing has it,
// and returns it with the time from start to the first report of it done. It returns only
// once the verification that follows the backup has ended too (not counted in the time),
// so that the next step of the benchmark does not share the machine with it.
func (b *backupFog) waitBackup(ctx context.Context, rg, name string, seq int64, start time.Time, limit time.Duration) (time.Duration, finstance.Backup, error) {
	var done time.Duration
	for deadline := start.Add(limit); time.Now().Before(deadline); {
		m, _, err := b.record(ctx, rg, name)
		if err != nil {
			return 0, finstance.Backup{}, err
		}
		bs, err := b.observed(ctx, m)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return 0, finstance.Backup{}, err
		}
		if bs != nil && bs.Seq >= seq && bs.Running == 0 {
			if bs.Error != "" {
				return 0, finstance.Backup{}, fmt.Errorf("backup %d failed: %s", seq, bs.Error)
			}
			if done == 0 {
				done = time.Since(start)
			}
			verified := bs.Verify != nil && bs.Verify.Seq >= seq
			for _, k := range bs.Backups {
				if k.Seq == seq && verified {
					return done, k, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return 0, finstance.Backup{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return 0, finstance.Backup{}, fmt.Errorf("backup %d of %s not reported done and verified within %s", seq, name, limit)
}

// waitFirstBackup waits until the scheduler's first backup of the instance (asked as soon as
// it is Ready) is done and listed.
func (b *backupFog) waitFirstBackup(ctx context.Context, rg, name string) error {
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); {
		m, _, err := b.record(ctx, rg, name)
		if err != nil {
			return err
		}
		if bs, err := b.observed(ctx, m); err == nil && m.BackupSeq > 0 && bs.Seq >= m.BackupSeq && bs.Running == 0 && len(bs.Backups) > 0 &&
			(bs.Error != "" || bs.Verify != nil && bs.Verify.Seq >= bs.Seq) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("the first backup of %s was not done within 5 minutes", name)
}

// instanceFiles is what running pgBackRest by hand on an instance takes: its configuration
// file, stanza and OS user, found in the deployment's directory as an operator would.
type instanceFiles struct {
	dir, conf, stanza string
	user              *pgbackrest.User
}

var stanzaLine = regexp.MustCompile(`(?m)^\[([^:\]]+)\]$`)

func findInstanceFiles(f *fog, region string) (instanceFiles, error) {
	confs, _ := filepath.Glob(filepath.Join(f.dir, "regions", region, "*", "pgbackrest.conf"))
	if len(confs) != 1 {
		return instanceFiles{}, fmt.Errorf("the instance's pgbackrest.conf in region %s: %v", region, confs)
	}
	text, err := os.ReadFile(confs[0])
	if err != nil {
		return instanceFiles{}, err
	}
	var stanza string
	for _, m := range stanzaLine.FindAllStringSubmatch(string(text), -1) {
		if m[1] != "global" {
			stanza = m[1]
		}
	}
	if stanza == "" {
		return instanceFiles{}, fmt.Errorf("no stanza in %s", confs[0])
	}
	dir := filepath.Dir(confs[0])
	fi, err := os.Stat(filepath.Join(dir, "pgdata"))
	if err != nil {
		return instanceFiles{}, err
	}
	sys := fi.Sys().(*syscall.Stat_t)
	u := &pgbackrest.User{UID: sys.Uid, GID: sys.Gid}
	return instanceFiles{dir: dir, conf: confs[0], stanza: stanza, user: u}, nil
}

// asUser makes cmd run as u with pgBackRest's empty environment, as a root shell's
// `sudo -u <user> env -i` would.
func asUser(cmd *exec.Cmd, u *pgbackrest.User, env ...string) *exec.Cmd {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID}}
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "LC_ALL=C.UTF-8", "HOME=/nonexistent"}, env...)
	cmd.Dir = "/"
	return cmd
}

// pgbackrestByHand runs pgbackrest with the instance's configuration and stanza as its OS user.
func (in instanceFiles) pgbackrestByHand(ctx context.Context, args ...string) (string, error) {
	bin, err := pgbackrest.FindBinary("")
	if err != nil {
		return "", err
	}
	all := append([]string{"--config=" + in.conf, "--stanza=" + in.stanza}, args...)
	cmd := asUser(exec.CommandContext(ctx, bin, all...), in.user)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("pgbackrest %s: %w: %s", strings.Join(args, " "), err, lastLines(string(out), 5))
	}
	return string(out), nil
}

func (in instanceFiles) driver() *pgbackrest.Driver {
	return &pgbackrest.Driver{Config: in.conf, Stanza: in.stanza, User: in.user}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

var backupLabel = regexp.MustCompile(`new backup label = (\S+)`)

// confValue reads one option of a pgbackrest.conf.
func confValue(conf, key string) string {
	f, err := os.Open(conf)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// checkpointAndSync starts a copy from a clean buffer pool and no dirty pages in the kernel,
// whichever copy ran before.
func checkpointAndSync(ctx context.Context, f *fog, address string) error {
	err := execSQL(ctx, f, address, "postgres", "CHECKPOINT")
	syscall.Sync()
	return err
}

func backupScenario(ctx context.Context, o options) (*result, error) {
	res := newResult(fmt.Sprintf("full backup of an instance holding pgbench scale %d: Fog's (asked through the control plane) against pgbackrest backup --type=full by hand", o.seedScale))
	bf, err := startBackupFog(ctx, "127.0.209.1")
	if err != nil {
		return nil, err
	}
	defer bf.close()
	storage := 256
	inst, err := bf.createInstance(ctx, "rg-bk", "bk", "eastus", resource.InstanceProperties{StorageSizeInGB: &storage})
	if err != nil {
		return nil, err
	}
	// The scheduler's first full backup, of the empty instance, comes first: nothing else is
	// asked of it while the runs go (the next full is a week away).
	if err := bf.waitFirstBackup(ctx, "rg-bk", "bk"); err != nil {
		return nil, err
	}
	if err := bf.do(ctx, "PUT", miPath("rg-bk", "bk")+"/databases/bench", map[string]any{}); err != nil {
		return nil, err
	}
	fmt.Printf("  loading pgbench scale %d ...\n", o.seedScale)
	if _, err := pgbench(ctx, addr(inst), "bench", "-i", "-q", "-s", strconv.Itoa(o.seedScale)); err != nil {
		return nil, err
	}
	if err := execSQL(ctx, bf.fog, addr(inst), "bench", "VACUUM ANALYZE"); err != nil {
		return nil, err
	}
	in, err := findInstanceFiles(bf.fog, "eastus")
	if err != nil {
		return nil, err
	}
	res.Notes = append(res.Notes, fmt.Sprintf("configuration: repo1-type posix, compress-type %s, process-max %s (the instance's pgbackrest.conf, used by both)",
		confValue(in.conf, "compress-type"), confValue(in.conf, "process-max")))
	fogBackup := func() (mb, secs, pgbrSecs float64, err error) {
		if err := checkpointAndSync(ctx, bf.fog, addr(inst)); err != nil {
			return 0, 0, 0, err
		}
		t0 := time.Now()
		seq, err := bf.askBackup(ctx, "rg-bk", "bk", finstance.BackupFull)
		if err != nil {
			return 0, 0, 0, err
		}
		d, k, err := bf.waitBackup(ctx, "rg-bk", "bk", seq, t0, time.Hour)
		if err != nil {
			return 0, 0, 0, err
		}
		return float64(k.Size) / (1 << 20), d.Seconds(), k.Stop.Sub(k.Start).Seconds(), nil
	}
	handBackup := func() (mb, secs, pgbrSecs float64, err error) {
		if err := checkpointAndSync(ctx, bf.fog, addr(inst)); err != nil {
			return 0, 0, 0, err
		}
		t0 := time.Now()
		out, err := in.pgbackrestByHand(ctx, "--type=full", "--log-level-console=info", "backup")
		if err != nil {
			return 0, 0, 0, err
		}
		d := time.Since(t0)
		m := backupLabel.FindStringSubmatch(out)
		if m == nil {
			return 0, 0, 0, fmt.Errorf("no backup label in pgbackrest's output: %s", lastLines(out, 3))
		}
		info, err := in.driver().Info(ctx, m[1])
		if err != nil {
			return 0, 0, 0, err
		}
		k, ok := info.Find(m[1])
		if !ok {
			return 0, 0, 0, fmt.Errorf("backup %s is not in the repository", m[1])
		}
		return float64(k.Info.Size) / (1 << 20), d.Seconds(), k.Stop().Sub(k.Start()).Seconds(), nil
	}
	// An unmeasured first round warms the page cache; then Fog and by hand alternate, the
	// order swapped every run.
	for run := -1; run < o.runs; run++ {
		var fmb, fs, fbr, hmb, hs, hbr float64
		if run%2 == 0 {
			if fmb, fs, fbr, err = fogBackup(); err == nil {
				hmb, hs, hbr, err = handBackup()
			}
		} else {
			if hmb, hs, hbr, err = handBackup(); err == nil {
				fmb, fs, fbr, err = fogBackup()
			}
		}
		if err != nil {
			return nil, err
		}
		if run < 0 {
			continue
		}
		res.add("size_mb", fmb)
		res.add("fog_mb_per_s", fmb/fs)
		res.add("hand_mb_per_s", hmb/hs)
		res.add("ratio_fog_to_hand", (fmb/fs)/(hmb/hs))
		res.add("fog_s", fs)
		res.add("hand_s", hs)
		res.add("fog_pgbackrest_s", fbr)
		res.add("hand_pgbackrest_s", hbr)
		fmt.Printf("  backup run %d: %.0f MB; fog %.1f s (%.1f MB/s; pgBackRest's own start to stop %.0f s); by hand %.1f s (%.1f MB/s; %.0f s); ratio %.3f\n",
			run+1, fmb, fs, fmb/fs, fbr, hs, hmb/hs, hbr, (fmb/fs)/(hmb/hs))
	}
	fmt.Print(res.finish("size_mb", "fog_mb_per_s", "hand_mb_per_s", "ratio_fog_to_hand", "fog_s", "hand_s", "fog_pgbackrest_s", "hand_pgbackrest_s"))
	return res, nil
}
