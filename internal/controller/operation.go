package controller

import (
	"github.com/fogdb/fog/internal/activity"
	"github.com/fogdb/fog/internal/engine"
)

// Operation is a long-running operation as stored (package engine).
type Operation = engine.Operation

// Operation kinds.
const (
	KindPutInstance    = engine.KindPutInstance
	KindDeleteInstance = engine.KindDeleteInstance
	KindPutDatabase    = engine.KindPutDatabase
	// KindRestoreDatabase restores a database to a point in time as a new database.
	KindRestoreDatabase = engine.KindRestoreDatabase
	KindDeleteDatabase  = engine.KindDeleteDatabase
	KindCreateGroup     = engine.KindCreateGroup
	KindUpdateGroup     = engine.KindUpdateGroup
	KindDeleteGroup     = engine.KindDeleteGroup
	KindFailover        = engine.KindFailover
	KindForceFailover   = engine.KindForceFailover
	KindPutRetention    = engine.KindPutRetention
	// KindBackup is the activity log's kind of a scheduled backup (not an operation).
	KindBackup = activity.KindBackup
)

// Initiators of operations.
const (
	InitiatorUser   = engine.InitiatorUser
	InitiatorSystem = engine.InitiatorSystem
)

func opKey(id string) string { return engine.OpKey(id) }
