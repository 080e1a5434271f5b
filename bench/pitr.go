package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	finstance "github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgbackrest"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/fogdb/fog/internal/resource"
)

// pitrScenario: a database of about 1 GB restored to a point in time as a new database of
// the same instance, through Fog's API (database PUT, createMode PointInTimeRestore) against
// the same steps by hand: pgbackrest restore --db-include into a scratch directory, recovery
// to the time (paused there), pg_dump -Fd -j 2, pg_restore -j 2 into a new database.
func pitrScenario(ctx context.Context, o options) (*result, error) {
	res := newResult(fmt.Sprintf("point-in-time restore of a database of pgbench scale %d into a new database: Fog's API against the same steps by hand", o.seedScale))
	bf, err := startBackupFog(ctx, "127.0.212.1")
	if err != nil {
		return nil, err
	}
	defer bf.close()
	const rg, name = "rg-pitr", "pitr"
	storage := 256
	inst, err := bf.createInstance(ctx, rg, name, "eastus", resource.InstanceProperties{StorageSizeInGB: &storage})
	if err != nil {
		return nil, err
	}
	if err := bf.waitFirstBackup(ctx, rg, name); err != nil {
		return nil, err
	}
	dbPath := miPath(rg, name) + "/databases/"
	if err := bf.do(ctx, "PUT", dbPath+"bench", map[string]any{}); err != nil {
		return nil, err
	}
	fmt.Printf("  loading pgbench scale %d ...\n", o.seedScale)
	if _, err := pgbench(ctx, addr(inst), "bench", "-i", "-q", "-s", strconv.Itoa(o.seedScale)); err != nil {
		return nil, err
	}
	if err := execSQL(ctx, bf.fog, addr(inst), "bench", "VACUUM ANALYZE"); err != nil {
		return nil, err
	}
	// A full backup of the loaded database, as the schedule takes one, so the restore replays
	// only the WAL since.
	seq, err := bf.askBackup(ctx, rg, name, finstance.BackupFull)
	if err != nil {
		return nil, err
	}
	if _, _, err := bf.waitBackup(ctx, rg, name, seq, time.Now(), time.Hour); err != nil {
		return nil, err
	}
	// The target: after a row marked before and before one marked after, more than a second
	// after the backup's end (pgBackRest picks a backup that ended in an earlier second).
	c, err := connect(ctx, bf.ca, addr(inst), "bench")
	if err != nil {
		return nil, err
	}
	defer c.Close(context.Background())
	time.Sleep(1100 * time.Millisecond)
	var target time.Time
	for _, q := range []string{"CREATE TABLE marks (what text)", "INSERT INTO marks VALUES ('before')"} {
		if _, err := c.Exec(ctx, q); err != nil {
			return nil, err
		}
	}
	time.Sleep(50 * time.Millisecond)
	if err := c.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&target); err != nil {
		return nil, err
	}
	time.Sleep(50 * time.Millisecond)
	var after string
	if err := c.QueryRow(ctx, "INSERT INTO marks VALUES ('after') RETURNING pg_walfile_name(pg_current_wal_lsn())").Scan(&after); err != nil {
		return nil, err
	}
	// The WAL past the target reaches the repository within archive_timeout; both restores
	// start once it is there, so neither waits for it.
	fmt.Println("  waiting for the WAL past the target to be archived (archive_timeout) ...")
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(time.Second) {
		var done bool
		if err := c.QueryRow(ctx, "SELECT coalesce(last_archived_wal, '') >= $1 FROM pg_stat_archiver", after).Scan(&done); err != nil {
			return nil, err
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("segment %s not archived within 3 minutes", after)
		}
	}
	in, err := findInstanceFiles(bf.fog, "eastus")
	if err != nil {
		return nil, err
	}
	check := func(db string) error {
		rc, err := connect(ctx, bf.ca, addr(inst), db)
		if err != nil {
			return fmt.Errorf("the restored database %s: %w", db, err)
		}
		defer rc.Close(context.Background())
		var marks string
		var branches int
		if err := rc.QueryRow(ctx, "SELECT string_agg(what, ','), (SELECT count(*) FROM pgbench_branches) FROM marks").Scan(&marks, &branches); err != nil {
			return fmt.Errorf("the restored database %s: %w", db, err)
		}
		if marks != "before" || branches != o.seedScale {
			return fmt.Errorf("the restored database %s has marks %q and %d branches, want before and %d", db, marks, branches, o.seedScale)
		}
		return nil
	}
	fogRestore := func(run int) (time.Duration, map[string]float64, error) {
		db := fmt.Sprintf("fog_r%d", run+1)
		if err := checkpointAndSync(ctx, bf.fog, addr(inst)); err != nil {
			return 0, nil, err
		}
		t0 := time.Now()
		err := bf.do(ctx, "PUT", dbPath+db, map[string]any{"properties": map[string]any{
			"createMode": "PointInTimeRestore", "sourceDatabaseId": dbPath + "bench", "restorePointInTime": target.UTC().Format(time.RFC3339Nano)}})
		d := time.Since(t0)
		if err != nil {
			return 0, nil, err
		}
		steps := restoreSteps(filepath.Join(bf.fog.dir, "fog.log"))
		if err := check(db); err != nil {
			return 0, nil, err
		}
		return d, steps, bf.do(ctx, "DELETE", dbPath+db, nil)
	}
	handRestore := func(run int) (time.Duration, map[string]float64, error) {
		db := fmt.Sprintf("hand_r%d", run+1)
		if err := checkpointAndSync(ctx, bf.fog, addr(inst)); err != nil {
			return 0, nil, err
		}
		d, steps, err := restoreByHand(ctx, bf.fog, in, inst, db, target, filepath.Join(bf.fog.dir, fmt.Sprintf("bench-pitr-%d", run+1)))
		if err != nil {
			return 0, nil, err
		}
		if err := check(db); err != nil {
			return 0, nil, err
		}
		return d, steps, execSQL(ctx, bf.fog, addr(inst), "postgres", "DROP DATABASE "+db)
	}
	stepNames := []string{"restore", "recover", "dump", "load"}
	// Run -1 is a first, unmeasured round of each: it brings the repository's files and the
	// binaries into the page cache, which the first measured run would otherwise pay alone.
	for run := -1; run < o.runs; run++ {
		var fd, hd time.Duration
		var fsteps, hsteps map[string]float64
		if run < 0 {
			if _, _, err = fogRestore(run); err == nil {
				_, _, err = handRestore(run)
			}
			if err != nil {
				return nil, err
			}
			fmt.Println("  pitr: a first round of each, not measured")
			continue
		}
		if run%2 == 0 {
			if fd, fsteps, err = fogRestore(run); err == nil {
				hd, hsteps, err = handRestore(run)
			}
		} else {
			if hd, hsteps, err = handRestore(run); err == nil {
				fd, fsteps, err = fogRestore(run)
			}
		}
		if err != nil {
			return nil, err
		}
		res.add("fog_s", fd.Seconds())
		res.add("hand_s", hd.Seconds())
		res.add("ratio_fog_to_hand", fd.Seconds()/hd.Seconds())
		var fs, hs []string
		for _, s := range stepNames {
			res.add("fog_"+s+"_s", fsteps[s])
			res.add("hand_"+s+"_s", hsteps[s])
			fs = append(fs, fmt.Sprintf("%s %.1f", s, fsteps[s]))
			hs = append(hs, fmt.Sprintf("%s %.1f", s, hsteps[s]))
		}
		// What Fog spends outside the four steps: the request, the operation and the agent's
		// command, the check that the WAL past the time is archived, reading the repository.
		other := fd.Seconds()
		for _, s := range stepNames {
			other -= fsteps[s]
		}
		res.add("fog_other_s", other)
		fs = append(fs, fmt.Sprintf("other %.1f, of which the WAL check %.1f", other, fsteps["wal"]))
		fmt.Printf("  pitr run %d: fog %.1f s (%s); by hand %.1f s (%s); ratio %.3f\n", run+1, fd.Seconds(), strings.Join(fs, ", "), hd.Seconds(), strings.Join(hs, ", "), fd.Seconds()/hd.Seconds())
	}
	keys := []string{"fog_s", "hand_s", "ratio_fog_to_hand"}
	for _, s := range stepNames {
		keys = append(keys, "fog_"+s+"_s", "hand_"+s+"_s")
	}
	keys = append(keys, "fog_other_s")
	fmt.Print(res.finish(keys...))
	return res, nil
}

// fogStep is one of the agent's log lines that ends a restore's step.
var fogStep = regexp.MustCompile(`msg="restore: ([^"]+)".* took=(\S+)`)

// restoreSteps reads, from Fog's log, how long each step of the last restore took (the
// agent logs the end of each).
func restoreSteps(log string) map[string]float64 {
	names := map[string]string{
		"the WAL past the restore point is archived":     "wal",
		"scratch cluster restored":                       "restore",
		"scratch cluster recovered to the restore point": "recover",
		"database dumped":                                "dump",
		"dump loaded into the new database":              "load",
	}
	out := map[string]float64{}
	f, err := os.Open(log)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if m := fogStep.FindStringSubmatch(sc.Text()); m != nil {
			if d, err := time.ParseDuration(m[2]); err == nil && names[m[1]] != "" {
				out[names[m[1]]] = d.Seconds()
			}
		}
	}
	return out
}

// restoreByHand restores database bench of the instance as it was at target into a new
// database db, the way an operator would with the instance's pgBackRest configuration: a
// scratch data directory of the instance's OS user under dir, and the instance's own
// binaries. It returns the time from the first command to the database loaded, and each
// step's.
func restoreByHand(ctx context.Context, f *fog, in instanceFiles, inst instance, db string, target time.Time, dir string) (time.Duration, map[string]float64, error) {
	bin, err := postgres.FindBinaries(ctx, "")
	if err != nil {
		return 0, nil, err
	}
	defer os.RemoveAll(dir)
	pgdata, sock := filepath.Join(dir, "pgdata"), filepath.Join(dir, "sock")
	steps := map[string]float64{}
	t0 := time.Now()
	step := time.Now()
	lap := func(name string) {
		steps[name] = time.Since(step).Seconds()
		step = time.Now()
	}
	// mkdir, chown: the scratch directory is the instance's OS user's, as its data directory is.
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return 0, nil, err
	}
	for _, d := range []string{pgdata, sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return 0, nil, err
		}
		if err := os.Chown(d, int(in.user.UID), int(in.user.GID)); err != nil {
			return 0, nil, err
		}
	}
	// pgbackrest restore: the instance's configuration with the scratch directory as pg1, only
	// the one database, recovery to the time and a pause there, archiving off in the copy.
	if _, err := in.pgbackrestByHand(ctx, "--pg1-path="+pgdata, "--type=time", "--target="+target.UTC().Format(pgbackrest.RestoreTimeLayout),
		"--target-action=pause", "--db-include=bench", "--archive-mode=off", "restore"); err != nil {
		return 0, nil, err
	}
	// Only the operator's sessions, over the scratch socket.
	if err := os.WriteFile(filepath.Join(pgdata, "pg_hba.conf"), []byte("local all all trust\n"), 0o600); err != nil {
		return 0, nil, err
	}
	if err := os.Chown(filepath.Join(pgdata, "pg_hba.conf"), int(in.user.UID), int(in.user.GID)); err != nil {
		return 0, nil, err
	}
	lap("restore")
	pgctl := func(args ...string) error {
		cmd := asUser(exec.CommandContext(ctx, filepath.Join(bin, "pg_ctl"), append([]string{"-D", pgdata}, args...)...), in.user)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("pg_ctl %s: %w: %s", strings.Join(args, " "), err, lastLines(string(out), 5))
		}
		return nil
	}
	opts := fmt.Sprintf("-c port=5433 -c listen_addresses='' -c unix_socket_directories='%s' -c ssl=off -c hba_file='%s'", sock, filepath.Join(pgdata, "pg_hba.conf"))
	if err := pgctl("-l", filepath.Join(sock, "postgres.log"), "-w", "-t", "3600", "-o", opts, "start"); err != nil {
		b, _ := os.ReadFile(filepath.Join(sock, "postgres.log"))
		return 0, nil, fmt.Errorf("%w; log: %s", err, lastLines(string(b), 8))
	}
	defer pgctl("-m", "immediate", "stop") //nolint:errcheck // stopped below; this is for a failure
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=5433 user=%s dbname=bench", sock, postgres.SystemUser))
	if err != nil {
		return 0, nil, err
	}
	for deadline := time.Now().Add(time.Hour); ; time.Sleep(100 * time.Millisecond) {
		if c, err := pgx.ConnectConfig(ctx, cfg); err == nil {
			var state string
			err := c.QueryRow(ctx, "SELECT pg_get_wal_replay_pause_state()").Scan(&state)
			c.Close(context.Background())
			if err == nil && state == "paused" {
				break
			}
		}
		if time.Now().After(deadline) {
			return 0, nil, fmt.Errorf("the scratch cluster did not pause at the target")
		}
	}
	lap("recover")
	dump := filepath.Join(dir, "dump")
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "pg_dump"), "-Fd", "-j", "2", "-f", dump, "-h", sock, "-p", "5433", "-U", postgres.SystemUser, "--exclude-schema=fog", "bench")
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, nil, fmt.Errorf("pg_dump: %w: %s", err, lastLines(string(out), 5))
	}
	if err := pgctl("-m", "immediate", "stop"); err != nil {
		return 0, nil, err
	}
	lap("dump")
	if err := execSQL(ctx, f, addr(inst), "postgres", "CREATE DATABASE "+db+" TEMPLATE template0"); err != nil {
		return 0, nil, err
	}
	cmd = exec.CommandContext(ctx, filepath.Join(bin, "pg_restore"), "-j", "2", "--no-owner", "--exit-on-error",
		"-d", fmt.Sprintf("host=%s port=%d user=fogadmin dbname=%s sslmode=require", inst.host, inst.port, db), dump)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+password)
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, nil, fmt.Errorf("pg_restore: %w: %s", err, lastLines(string(out), 5))
	}
	lap("load")
	return time.Since(t0), steps, nil
}
