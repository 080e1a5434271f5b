// Package controller is Fog's control plane: it validates and records what users ask for,
// writes the desired state agents reconcile to, and drives each long-running operation until
// the observed state proves it done. Operations are persisted, so a restarted controller
// resumes the ones in flight.
//
// # Failover as a persisted state machine
//
// A failover operation's record (Operation) holds the side the user asked to become primary
// (Target), the epoch the operation created (Epoch) and the last step reached (Step). Each
// step's effect on the group and the members' desired state is written in the same store
// transaction as the record of reaching it (advance), so a crash leaves either both or
// neither. A restarted controller continues from Step; it never works out the direction
// from the group's current primary, which after a crash may already be the target. The
// group's ActiveOperation is released in the same transaction that gives the operation its
// final status (finish), so exactly one operation per group runs, across restarts and
// graceful stops (a stop leaves the operation InProgress; it resumes on the next start).
//
// Planned failover (no loss). The old primary is drained rather than shut down, so its
// shutdown checkpoint is not inside the time writes stop: every commit a client was told of
// lies before the drained end of WAL, which the new primary has before it is promoted.
//
//	step        written in the transaction                     resume from here              roll back from here
//	(accepted)  the operation, Target                          checks, CHECKPOINT, fence     nothing changed: Failed
//	fenced      epoch E+1, Switching, old: drain (clients      wait for the drained end of   epoch E+2, old primary again
//	            refused and ended, server keeps running)       WAL (or the old one down)     (it lost nothing), Failed
//	promoting   new: primary once it has WAL up to that        wait for the new primary      as above, unless the new side
//	            point, DrainedLSN                              of epoch E+1                  did promote: then go on
//	routed      Primary = Target, Switching off, event         make the old one follow       (roles changed: no rollback)
//	rejoining   old: stop, rewind (its shutdown checkpoint),   wait (bounded) for streaming  Succeeded either way
//	            standby of the new primary
//
// Forced failover (loses what the secondary had not received, and reports it):
//
//	step        written in the transaction                     resume from here              roll back from here
//	(accepted)  the operation, Target                          checks, fence                 nothing changed: Failed
//	fenced      epoch E+1, Switching, old: paused,             wait until the old primary    epoch E+2, old primary again,
//	            immediate stop, rewind later                   is confirmed stopped in E+1   Failed (it was stopped at
//	                                                           or its agent's lease expired  once and recovers what it had)
//	promoting   new: primary                                   wait for the new primary      as above, unless the new side
//	                                                           of epoch E+1                  did promote: then go on
//	routed      Primary = Target, Switching off, lastForced    old: rewind and follow        (roles changed: no rollback)
//	rejoining   old: standby with rewind                       wait (bounded); record the    Succeeded either way
//	                                                           lost range once rewound
//
// Creating a group (record written: the operation and the group, members' desired state;
// then "seeding": the secondary told to seed) and deleting one ("leaving": both members
// standalone in one transaction with the group marked; then the record removed) are
// re-entrant in the same way: each wait reads observed state, each write is conditional, and
// a resumed driver repeats nothing that would change the outcome. An update changes only
// policies and ends in the transaction that accepts it.
//
// Every step first reads the state it expects (observed state, the lease record), so a step
// repeated after a crash is harmless. A failpoint (package failpoint) marks each step; the
// unit tests crash the controller at each with the real agents over in-memory PostgreSQL
// (package agenttest), and the end-to-end tests kill
// the real fog binary and PostgreSQL there.
//
// # Leases and fencing
//
// The controller never promotes a new primary while the old one could still accept writes:
// it waits until the old primary's agent confirms it stopped in the new epoch, or until that
// agent's lease has gone a full TTL without a renewal on the controller's own clock (package
// lease), by which time the agent, or its guard process if the agent is dead, has stopped it.
// Listener routes name a primary only while its agent holds a live lease for it in the
// group's current epoch.
package controller
