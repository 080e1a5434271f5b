package resource

import (
	"slices"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/fault"
)

// SystemDatabases are PostgreSQL's own databases, never listed as user databases.
var SystemDatabases = []string{"postgres", "template0", "template1"}

// IsSystemDatabase reports whether name is one of SystemDatabases.
func IsSystemDatabase(name string) bool { return slices.Contains(SystemDatabases, name) }

// ValidateDatabaseName checks a database name: 1 to 63 bytes (PostgreSQL's NAMEDATALEN), no
// control characters and none of the characters ARM forbids in resource names, not a system
// database.
func ValidateDatabaseName(name string) error {
	if IsSystemDatabase(strings.ToLower(name)) || strings.EqualFold(name, "master") || strings.EqualFold(name, "msdb") ||
		strings.EqualFold(name, "model") || strings.EqualFold(name, "tempdb") {
		return fault.Invalid("CannotUseReservedDatabaseName", "The database name '%s' is reserved; choose another name.", name)
	}
	bad := len(name) == 0 || len(name) > 63 || strings.HasSuffix(name, ".") || strings.HasSuffix(name, " ") ||
		strings.ContainsAny(name, `<>*%&:\/?#"'`)
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			bad = true
		}
	}
	if bad {
		return fault.Invalid("InvalidIdentifier",
			"The database name '%s' is invalid: use 1 to 63 bytes without control characters or any of < > * %% & : \\ / ? # \" ', not ending with a period or space.", name)
	}
	return nil
}

// DatabaseProperties is the properties block of a managed database.
type DatabaseProperties struct {
	Collation    string     `json:"collation,omitempty"`
	Status       string     `json:"status,omitempty"`
	CreationDate *time.Time `json:"creationDate,omitempty"`
	// CreateMode, with SourceDatabaseID and RestorePointInTime, makes the database a restore
	// of another one as it was at that time (Azure's createMode PointInTimeRestore); they are
	// read on create only.
	CreateMode         string     `json:"createMode,omitempty"`
	SourceDatabaseID   string     `json:"sourceDatabaseId,omitempty"`
	RestorePointInTime *time.Time `json:"restorePointInTime,omitempty"`
	// RestorableDroppedDatabaseID, instead of SourceDatabaseID, restores a dropped database
	// (restorableDroppedDatabases), as it was when dropped unless RestorePointInTime is
	// earlier.
	RestorableDroppedDatabaseID string `json:"restorableDroppedDatabaseId,omitempty"`
	// RecoverableDatabaseID, with CreateMode Recovery, geo-restores a database
	// (recoverableDatabases) from the copy of its instance's backups in this instance's
	// region, to the end of the WAL archived there.
	RecoverableDatabaseID string `json:"recoverableDatabaseId,omitempty"`
	// LongTermRetentionBackupResourceID, with createMode RestoreLongTermRetentionBackup,
	// restores the database as it was at the end of that long-term retention backup.
	LongTermRetentionBackupResourceID string `json:"longTermRetentionBackupResourceId,omitempty"`
	// EarliestRestorePoint is Azure's read-only earliest point in time the database can be
	// restored to; absent until its instance has a backup.
	EarliestRestorePoint *time.Time `json:"earliestRestorePoint,omitempty"`
	// LastBackup* are Fog's read-only additions: the last backup of the database's instance
	// (when it ended, Full or Differential, the data it covers and how long it took). They
	// are the instance's, not the database's: PostgreSQL backs up a whole cluster, every
	// database of the instance in one backup. Absent until the instance has a backup.
	LastBackupTime            *time.Time `json:"lastBackupTime,omitempty"`
	LastBackupType            string     `json:"lastBackupType,omitempty"`
	LastBackupSizeBytes       *int64     `json:"lastBackupSizeBytes,omitempty"`
	LastBackupDurationSeconds *int64     `json:"lastBackupDurationSeconds,omitempty"`
}

// Database create modes (Azure's). Fog restores a database (or a dropped one) to a point in
// time, and geo-restores one (Recovery); the others are refused until they are built.
const (
	CreateModeDefault            = "Default"
	CreateModePointInTimeRestore = "PointInTimeRestore"
	CreateModeRecovery           = "Recovery"
	// CreateModeRestoreLTR restores a long-term retention backup.
	CreateModeRestoreLTR = "RestoreLongTermRetentionBackup"
)

// RecoverableDatabaseJSON is the wire form of a database that a geo-restore can recover
// (Azure's RecoverableManagedDatabase): its last point available in the copy of its
// instance's backups in the partner region.
type RecoverableDatabaseJSON struct {
	ID         string                        `json:"id"`
	Name       string                        `json:"name"`
	Type       string                        `json:"type"`
	Properties RecoverableDatabaseProperties `json:"properties"`
}

// RecoverableDatabaseProperties: Azure's lastAvailableBackupDate (as a string, in Azure's
// shape), and Fog's read-only additions: the region that holds the copy, and the end of the
// WAL archived there, the point a geo-restore reaches.
type RecoverableDatabaseProperties struct {
	LastAvailableBackupDate string    `json:"lastAvailableBackupDate"`
	GeoBackupRegion         string    `json:"geoBackupRegion"`
	LastArchivedTime        time.Time `json:"lastArchivedTime,omitzero"`
}

// Backup types as the API names them (lastBackupType).
const (
	BackupTypeFull         = "Full"
	BackupTypeDifferential = "Differential"
	BackupTypeIncremental  = "Incremental"
)

// RestorableDroppedDatabaseJSON is the wire form of a database dropped from an instance that
// the instance's backups can restore (Azure's ManagedInstanceRestorableDroppedDatabase).
type RestorableDroppedDatabaseJSON struct {
	ID         string                              `json:"id"`
	Name       string                              `json:"name"`
	Type       string                              `json:"type"`
	Location   string                              `json:"location"`
	Properties RestorableDroppedDatabaseProperties `json:"properties"`
}

// RestorableDroppedDatabaseProperties: when the database was made and dropped, and the
// earliest point its restore can reach.
type RestorableDroppedDatabaseProperties struct {
	DatabaseName        string    `json:"databaseName"`
	CreationDate        time.Time `json:"creationDate"`
	DeletionDate        time.Time `json:"deletionDate"`
	EarliestRestoreDate time.Time `json:"earliestRestoreDate"`
}

// DatabaseJSON is the wire form of a managed database.
type DatabaseJSON struct {
	ID         string             `json:"id,omitempty"`
	Name       string             `json:"name,omitempty"`
	Type       string             `json:"type,omitempty"`
	Location   string             `json:"location,omitempty"`
	Tags       map[string]string  `json:"tags,omitempty"`
	Properties DatabaseProperties `json:"properties"`
}
