package pgbackrest

import (
	"sort"
	"time"
)

// Info is one stanza in `pgbackrest info --output=json`.
type Info struct {
	Name   string       `json:"name"`
	Status Status       `json:"status"`
	Cipher string       `json:"cipher"`
	DB     []DB         `json:"db"`
	Repos  []RepoInfo   `json:"repo"`
	Backup []BackupInfo `json:"backup"`
	// Archive is the WAL range kept per PostgreSQL version and system (and repository).
	Archive []ArchiveInfo `json:"archive"`
}

// Status is a stanza's or a repository's state: code 0 is ok; 1 the stanza is missing, 2 it
// has no backup yet, 3 the stanza is missing in a repository, 4 different in the
// repositories, 5 a repository cannot be read, 6 several repositories are in error, 99 other.
type Status struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Lock    *struct {
		Backup struct {
			Held bool `json:"held"`
			// SizeComplete and Size are a running backup's progress (pgBackRest 2.41+).
			Size         int64 `json:"size,omitempty"`
			SizeComplete int64 `json:"size-cplt,omitempty"`
		} `json:"backup"`
	} `json:"lock,omitempty"`
}

// The stanza status codes that mean no backup can be restored.
const (
	StatusOK        = 0
	StatusMissing   = 1
	StatusNoBackup  = 2
	StatusRepoError = 5
)

// DB is a PostgreSQL system the stanza has backed up (a new one after stanza-upgrade).
type DB struct {
	ID       int    `json:"id"`
	RepoKey  int    `json:"repo-key"`
	SystemID uint64 `json:"system-id"`
	Version  string `json:"version"`
}

// RepoInfo is one repository's status for the stanza.
type RepoInfo struct {
	Key    int    `json:"key"`
	Cipher string `json:"cipher"`
	Status Status `json:"status"`
}

// ArchiveInfo is the WAL a repository keeps for one database system.
type ArchiveInfo struct {
	Database struct {
		ID      int `json:"id"`
		RepoKey int `json:"repo-key"`
	} `json:"database"`
	// ID is "<version>-<db id>", e.g. "15-1".
	ID string `json:"id"`
	// Min and Max are the oldest and newest WAL segments kept (names, "" when none).
	Min string `json:"min"`
	Max string `json:"max"`
}

// BackupInfo is one backup.
type BackupInfo struct {
	Label string     `json:"label"`
	Type  BackupType `json:"type"`
	// Prior is the backup a diff or incr builds on; Reference every backup it needs files of.
	Prior     string   `json:"prior"`
	Reference []string `json:"reference"`
	Error     *bool    `json:"error,omitempty"`
	Database  struct {
		ID      int `json:"id"`
		RepoKey int `json:"repo-key"`
	} `json:"database"`
	Timestamp struct {
		Start int64 `json:"start"`
		Stop  int64 `json:"stop"`
	} `json:"timestamp"`
	// Archive is the first and last WAL segment the backup needs to be consistent.
	Archive struct {
		Start string `json:"start"`
		Stop  string `json:"stop"`
	} `json:"archive"`
	LSN struct {
		Start string `json:"start"`
		Stop  string `json:"stop"`
	} `json:"lsn"`
	Info struct {
		// Size is the cluster's size; Delta what this backup copied of it.
		Size  int64 `json:"size"`
		Delta int64 `json:"delta"`
		// Repository is what it takes in the repository (compressed).
		Repository struct {
			Size  int64 `json:"size"`
			Delta int64 `json:"delta"`
		} `json:"repository"`
	} `json:"info"`
	// DatabaseRef lists the databases in the backup (only with --set).
	DatabaseRef []DatabaseRef     `json:"database-ref,omitempty"`
	Annotation  map[string]string `json:"annotation,omitempty"`
}

// DatabaseRef is a database a backup holds.
type DatabaseRef struct {
	Name string `json:"name"`
	OID  uint32 `json:"oid"`
}

// HasDatabase reports whether the backup lists database name (read with --set).
func (b BackupInfo) HasDatabase(name string) bool {
	for _, d := range b.DatabaseRef {
		if d.Name == name {
			return true
		}
	}
	return false
}

// Start and Stop are when the backup began and ended.
func (b BackupInfo) Start() time.Time { return time.Unix(b.Timestamp.Start, 0).UTC() }

// Stop is when the backup ended: the earliest time it can be restored to.
func (b BackupInfo) Stop() time.Time { return time.Unix(b.Timestamp.Stop, 0).UTC() }

// Failed reports a backup pgBackRest found a checksum error in.
func (b BackupInfo) Failed() bool { return b.Error != nil && *b.Error }

// Repo is the repository the backup is in.
func (b BackupInfo) Repo() int { return b.Database.RepoKey }

// Latest returns the newest backup (by stop time) in repository repo (0: any).
func (in *Info) Latest(repo int) (BackupInfo, bool) {
	var best BackupInfo
	found := false
	for _, b := range in.Backup {
		if repo != 0 && b.Repo() != repo {
			continue
		}
		if !found || b.Timestamp.Stop > best.Timestamp.Stop {
			best, found = b, true
		}
	}
	return best, found
}

// Earliest returns the earliest point in time a restore can reach from repository repo (0:
// any): the end of its oldest backup. The latest point is the last commit whose WAL has been
// archived, which only the WAL itself tells.
func (in *Info) Earliest(repo int) (time.Time, bool) {
	bs := append([]BackupInfo(nil), in.Backup...)
	sort.Slice(bs, func(i, j int) bool { return bs[i].Timestamp.Stop < bs[j].Timestamp.Stop })
	for _, b := range bs {
		if (repo == 0 || b.Repo() == repo) && !b.Failed() {
			return b.Stop(), true
		}
	}
	return time.Time{}, false
}

// Find returns the backup labelled label.
func (in *Info) Find(label string) (BackupInfo, bool) {
	for _, b := range in.Backup {
		if b.Label == label {
			return b, true
		}
	}
	return BackupInfo{}, false
}
