// Package engine runs Fog's long-running operations as persisted state machines: the
// role-changing ones (planned and forced failover, creating and deleting a failover group)
// and those of a managed instance and its databases (creating, updating and deleting an
// instance, creating and dropping a database). Each kind is a table of steps (Table); one
// runner (Engine.Run) executes every table, and the tables below are printed from the code's
// tables (a test compares them), so they are the same thing. What stays in the controller
// is the API's service (validate, record, accept) and scheduling: which operations run, for
// how long, and the transaction that records each one's outcome.
//
// # Operations as records
//
// An operation's record (Operation) holds the side the user asked to become primary
// (Target), the epoch the operation created (Epoch) and the last step reached (Step). Each
// step's effect on the group and the members' desired state is written in the same store
// transaction as the record of reaching it, so a crash leaves either both or neither. The
// runner continues from Step; it never works out the direction from the group's current
// primary, which after a crash may already be the target. At each step it first reads the
// state it expects (observed state, the lease record), then waits for what the step waits
// for, then writes the next step. A step that cannot complete fails the operation as its
// table says: with nothing to undo, by a rollback (recorded as the step rolledBack, with
// the reason, so a resumed runner reports it), or not at all once the roles have changed.
// The operation's final status, and the release of the group's operation mark, are one
// transaction written by the controller (exactly one operation per group runs, across
// restarts and graceful stops: a stop leaves the operation InProgress; it resumes on the
// next start).
//
// Planned failover (no loss). The old primary is drained rather than shut down, so its
// shutdown checkpoint is not inside the time writes stop: every commit a client was told of
// lies before the drained end of WAL, which the new primary has before it is promoted.
//
//	step        written in the transaction                     resume from here              roll back from here
//	(accepted)  the operation, Target                          checks, CHECKPOINT, fence     nothing changed: Failed
//	fenced      epoch E+1, Switching, old: drain (clients      wait for the drained end of   epoch E+2, old primary again
//	            refused and ended, server keeps running)       WAL (or the old one down)     (it lost nothing), Failed
//	promoting   new: primary once it has WAL up to that        wait for the new primary of   as above, unless the new side
//	            point, DrainedLSN                              epoch E+1                     did promote: then go on
//	routed      Primary = Target, Switching off, event         make the old one follow       (roles changed: no rollback)
//	rejoining   old: stop, rewind (its shutdown checkpoint),   wait (bounded) for streaming  Succeeded either way
//	            standby of the new primary
//
// Forced failover (loses what the secondary had not received, and reports it):
//
//	step        written in the transaction                     resume from here              roll back from here
//	(accepted)  the operation, Target                          checks, fence                 nothing changed: Failed
//	fenced      epoch E+1, Switching, old: paused, immediate   wait until the old primary    epoch E+2, old primary again,
//	            stop, rewind later                             is confirmed stopped in E+1   Failed (it was stopped at once
//	                                                           or its agent's lease expired  and recovers what it had)
//	promoting   new: primary                                   wait for the new primary of   as above, unless the new side
//	                                                           epoch E+1                     did promote: then go on
//	routed      Primary = Target, Switching off, lastForced    old: rewind and follow        (roles changed: no rollback)
//	rejoining   old: standby with rewind                       wait (bounded); record the    Succeeded either way
//	                                                           lost range once rewound
//
// Creating a group (the API writes the operation, the group and the members' desired state;
// the secondary is told to seed once the primary keeps its slot):
//
//	step        written in the transaction                     resume from here              roll back from here
//	(accepted)  the operation, the group, members' desired     wait for the primary to keep  Failed; the group stays for a
//	            state (the primary keeps a slot)               the secondary's slot          delete
//	seeding     the secondary told to seed                     wait for the seed and for     Failed; the group stays for a
//	                                                           streaming, as both sides see  delete
//	                                                           it
//
// Deleting a group:
//
//	step        written in the transaction                     resume from here              roll back from here
//	(accepted)  the operation, the group marked Deleting       nothing                       Failed; the delete can be sent
//	                                                                                         again
//	leaving     both members standalone, the instances out of  wait for both to run as       Failed; the delete can be sent
//	            the group, the secondary a backup stanza of    primaries on their own;       again
//	            its own                                        remove the group record
//
// An update changes only policies and ends in the transaction that accepts it. So does a
// database's short-term retention policy (KindPutRetention), accepted finished: the policy,
// the instance's retention and its desired state are written in one transaction.
//
// # Instances and databases
//
// An instance's and a database's operations change no roles, and their tables are short.
// The API writes the instance's desired state with the operation (a new instance's name
// reserved in the same transaction), the agent of its region reconciles to it, and the
// runner waits until the agent's observed state shows the operation's generation. A create
// that fails is removed entirely, so that its name can be used again: the agent has removed
// the data directory already; the rollback records the step rolledBack, with the reason, in
// the transaction that marks the desired state deleted, and the runner, resumed there if
// need be, removes the records once the agent reports the instance deleted.
//
// Creating or updating an instance:
//
//	step        written in the transaction                     resume from here              roll back from here
//	(accepted)  the operation, the instance (Creating, its     wait for the agent to report  an update: the instance
//	            name reserved, or Updating), its desired       the generation Ready or       Failed, Failed; a create:
//	            state                                          Failed; Ready: the instance   rolledBack
//	                                                           Succeeded
//	rolledBack  a create's desired state deleted, the reason   wait for the agent to delete  Failed with the recorded
//	                                                           it; remove its records (the   reason
//	                                                           name is free again)
//
// Deleting an instance (one outside any failover group):
//
//	step        written in the transaction                     resume from here              roll back from here
//	(accepted)  the operation, the instance Deleting, its      wait for the agent to delete  Failed; the desired state
//	            desired state deleted                          it; remove its records (the   stays deleted and is applied
//	                                                           name is free again)           when the agent returns
//
// Creating a database (the instance's agent runs a command the API writes with the
// operation):
//
//	step        written in the transaction                     resume from here              roll back from here
//	(accepted)  the operation, the agent's command to create   wait for the agent to run     Failed with the agent's error
//	            it (owned by the instance's admin)             the command; remove it
//
// Dropping a database:
//
//	step        written in the transaction                     resume from here              roll back from here
//	(accepted)  the operation, the agent's command to drop it  wait for the agent to run     Failed with the agent's error
//	                                                           the command; remove it
//
// Restoring a database to a point in time as a new database (a command too: the agent
// restores the source's backup into a scratch cluster, recovers it to the time, and moves the
// database into the instance under the new name; docs/backups.md):
//
//	step        written in the transaction                     resume from here              roll back from here
//	(accepted)  the operation, the agent's command to restore  wait for the agent to run     Failed with the agent's error
//	            the source database as it was at the time, as  the command, recording its    (the agent removed what it
//	            the new database (owned by the instance's      progress; remove it           made)
//	            admin)
//
// A failpoint (package failpoint) marks each failover step, where the table's Point,
// WaitedPoint say; the controller's unit tests crash it at each with the real agents over
// in-memory PostgreSQL (package agenttest), and the end-to-end tests kill the real fog
// binary and PostgreSQL there.
//
// # Leases and fencing
//
// The engine never promotes a new primary while the old one could still accept writes: it
// waits until the old primary's agent confirms it stopped in the new epoch, or until that
// agent's lease has gone a full TTL without a renewal on this process's own clock (package
// lease), by which time the agent, or its guard process if the agent is dead, has stopped
// it. Listener routes name a primary only while its agent holds a live lease for it in the
// group's current epoch.
package engine
