// Package agent is the regional agent: it reconciles the PostgreSQL instances of one region to
// the desired state in the store, carries out commands (create, drop or restore a database),
// and publishes each instance's observed state.
//
// # Transitions
//
// One worker per instance reconciles it: on every change of its desired state, and on every
// resync. A reconcile tries the rows below in order (the table transitions in the code; a test
// checks that this copy matches it) and runs each whose condition holds; a row may end the
// pass. Before the first row but delete, the worker leaves a create that failed to the control
// plane, adopts the data directory (the instance's own OS user), and checks the epoch: desired
// state of an older epoch of the group than this instance has seen is refused
// (ErrStaleEpoch), a newer one is recorded durably before anything acts on it. The lease gate
// lets a start or a promotion of a primary of a group through only while the agent holds the
// lease for it in the spec's epoch (ErrNoLease). A backup under way is cancelled before a
// pass that stops, drains, demotes or deletes the instance (a deletion waits for it to end),
// and so is a restore into an instance being deleted, which removes what it made first.
// An error ends the pass: a create that failed is removed and reported Failed, anything else
// is reported with its error (Stopped if the server is down) and tried again on the next
// resync, from where it stopped.
//
//	delete
//	  when       the spec is deleted
//	  checks     nothing
//	  does       fast shutdown (immediate if that fails), remove the data, give root the
//	             instance's backups, remove its OS user
//	  publishes  Deleted (a Deleted status is left as it is)
//	create
//	  when       no data directory yet, and the spec is no standby (a standby is seeded)
//	  checks     epoch
//	  does       initdb
//	  publishes  Creating before it begins; Failed (and nothing left behind) if it fails
//	stop
//	  when       the spec is paused (a failover demoted the instance)
//	  checks     epoch; the server runs
//	  does       shut it down: fast, or immediate when StopImmediately
//	  publishes  Stopped in the spec's epoch (Error if the shutdown failed); ends the pass
//	drain
//	  when       the spec says Drain (a planned failover fences the old primary)
//	  checks     epoch; the server runs (else Stopped)
//	  does       refuse clients in pg_hba.conf, end their sessions, read the flushed end of
//	             WAL; the server keeps running so its WAL sender ships everything
//	  publishes  Drained, Role primary, DrainedLSN (the first one read) in the spec's epoch;
//	             ends the pass
//	identity
//	  when       the spec is a standby
//	  checks     epoch
//	  does       the upstream's address and this instance's replication certificate (issued
//	             once, renewed a month before it expires)
//	  publishes  nothing
//	seed
//	  when       the spec is a standby with no data directory, or SeedGeneration is above
//	             SeededGeneration
//	  checks     epoch
//	  does       restore the newest backup of the region's repository (delta) and replay its
//	             archive, when it has one of the stanza that cannot lead off the primary's
//	             timeline, until it streams from the upstream (seed.go); else, or if that fails
//	             or stalls, pg_basebackup from the upstream; configure as its standby, start,
//	             wait (bounded) for streaming
//	  publishes  Creating, Role standby, SeedSource (SeedBackup, SeedFallback), SeedPercent
//	             while it copies; then SeededGeneration, SeededAt, Rewound cleared
//	demote
//	  when       the spec is a standby (not seeded in this pass)
//	  checks     epoch; the server runs and pg_is_in_recovery() is false: a primary told to
//	             follow, not fenced through the protocol
//	  does       fast shutdown, and rewind it below
//	  publishes  nothing
//	rewind
//	  when       the spec is a standby with Rewind (or demoted above), the server is down, and
//	             not rewound in the spec's epoch
//	  checks     epoch
//	  does       crash recovery unless shut down cleanly; note the end of WAL; keep the lost
//	             WAL aside (KeepLostWAL) and decode it; pg_rewind against the upstream
//	  publishes  Rewound: the lost range, its bytes and transactions, in the spec's epoch
//	rejoin
//	  when       the spec is a standby (not seeded in this pass)
//	  checks     epoch
//	  does       write the standby configuration; reload a running server (restart it if its
//	             libraries changed); start; wait (bounded) for streaming
//	  publishes  nothing itself (observe does)
//	promote
//	  when       the spec is a primary or standalone
//	  checks     epoch; lease gate; the server is a standby (down with standby.signal: started
//	             as one first; up: pg_is_in_recovery()); it received WAL up to PromoteAfterLSN
//	             (15 s, else ErrNotCaughtUp)
//	  does       pg_promote(), then a checkpoint on the new timeline (pg_rewind of the old
//	             primary needs it)
//	  publishes  Role primary, Epoch and PromotedFrom (the switch point) at once
//	start
//	  when       the spec is a primary or standalone
//	  checks     epoch; lease gate; something changed (generation, phase, promoted, first pass
//	             of this worker), or the server is down
//	  does       write the configuration; reload a running server (restart it if its libraries
//	             changed); start a down one and wait until it is ready
//	  publishes  Stopped before it starts a server that was Ready
//	archive
//	  when       the spec has backups (and the agent runs pgBackRest), its stanza is not in the
//	             status yet (a seed clears it), and it is no group's member waiting to be
//	             seeded
//	  checks     epoch; the server runs
//	  does       create the stanza in the region's repository from pg_control, as the
//	             instance's OS user, so a standby's member needs no primary (the configuration
//	             and archive_command were written with the server's); a copy there of another
//	             system's, or another OS user's, is set aside, never deleted
//	  publishes  Backup.Stanza
//	serve backups
//	  when       the spec has backups and is its group's primary (not paused), and its stanza
//	             is in the status
//	  checks     epoch; the server runs
//	  does       run pgBackRest's TLS server as the instance's OS user on its address, port +
//	             1000, admitting only the partner's replication certificate, for the stanza
//	             alone (a configuration and lock directory of its own); start it again if it
//	             ended. An instance that is no group's primary has it stopped
//	  publishes  Backup.Served: its address and the primary's paths, which the partner's
//	             backups name (cleared when it stops serving)
//	backup
//	  when       the spec has backups and asks for a sequence number above the status's, the
//	             instance was Ready, and no backup of it is queued
//	  checks     epoch
//	  does       queue it with the agent's runner: one backup at a time on the machine, as the
//	             instance's OS user; a standby's is taken from the standby through its
//	             primary's server (Backup.Served of the partner's status; without it the backup
//	             is not taken, and reported cancelled); a backup of that number already in the
//	             repository is not taken again; it ends once its last WAL segment is archived
//	  publishes  Backup.Running; its outcome (Backup.Seq, Error, the repository's backups) once
//	             it ends
//	observe
//	  when       always, unless a row above ended the pass
//	  checks     epoch
//	  does       read role, replication and databases; on a primary make sure of the admin,
//	             Fog's roles, the system database and the slots; admit the partner in
//	             pg_hba.conf; keep the link views; name the relations lost transactions wrote
//	  publishes  Ready in the spec's generation and epoch, with Role, Replication, Databases;
//	             DrainedLSN cleared
//
// The worker reaches PostgreSQL only through Server and Session: a real cluster in fog, an
// in-memory one in tests (package agenttest).
//
// # Observation
//
// Between reconciles the worker publishes a fresh look at every running instance that is
// Ready (replication lag, role, databases), so that reads never ask the agent.
//
// # Commands
//
// After each pass the worker carries out the instance's pending commands and marks them
// done, all but a restore (instance.CmdRestoreDatabase): that one it hands to the agent's
// restore runner, which runs one restore at a time beside the workers, publishes its
// progress on the command and marks it done if it fails, or Restored, which the worker then
// ends as any other command (after a fresh observation); a deleted command cancels it. Its
// steps, what each keeps for a redo after a crash, and what a failure removes are in
// restore.go. The delete row cancels an instance's restores, and waits for them, first.
package agent
