// Package controller is Fog's control plane service: it validates and records what users ask
// for, writes the desired state agents reconcile to, and, in the process that leads (Lead),
// schedules each long-running operation until the observed state proves it done. Operations
// are persisted, so a new leader resumes the ones in flight.
//
// Every operation (planned and forced failover, creating and deleting a failover group,
// creating, updating and deleting an instance, creating and dropping a database) is a state
// machine run by package engine, whose documentation carries the step tables, what resume
// and rollback do from each step, and how leases fence an old primary; only an update of a
// group ends in the transaction that accepts it. The controller accepts them (one
// transaction writes the operation, the group's or the instance's operation mark and the
// first desired state), starts a runner for each, and records each operation's outcome
// (finish) in the transaction that releases the group's mark, so exactly one operation per
// group runs, across restarts and graceful stops (a stop leaves the operation InProgress; it
// resumes on the next start).
//
// There is one Controller per process. Its API accepts requests through the store it was
// made with; while the process leads, Lead drives operations through the leader's store,
// and an operation this process's API accepts is started at once (other servers' are learnt
// of from the store). Between operations the leader looks after groups (a lost WAL range is
// recorded, a secondary whose slot was invalidated is reseeded) and runs the automatic
// failover policy (package autofailover), a new one for each leadership, to which it hands
// the leader's engine, the way to start a forced failover, and its probe of a primary; and
// the backup schedule (package backupsched), to which it hands the instances with their
// observed state and the engine's transaction that asks for a backup, recording each backup
// done or failed in the activity log.
package controller
