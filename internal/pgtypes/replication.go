package pgtypes

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Slot is a replication slot on a primary.
type Slot struct {
	Name       string `json:"name"`
	Active     bool   `json:"active"`
	WALStatus  string `json:"walStatus"`
	RestartLSN string `json:"restartLsn,omitempty"`
}

// Replica is one row of pg_stat_replication.
type Replica struct {
	AppName   string     `json:"appName"`
	State     string     `json:"state"`
	SentLSN   string     `json:"sentLsn"`
	WriteLSN  string     `json:"writeLsn"`
	FlushLSN  string     `json:"flushLsn"`
	ReplayLSN string     `json:"replayLsn"`
	FlushLag  float64    `json:"flushLagSeconds"`
	ReplyTime *time.Time `json:"replyTime,omitempty"`
}

// Replication is what a server says about its replication right now.
type Replication struct {
	InRecovery bool   `json:"inRecovery"`
	Timeline   int    `json:"timeline"`
	CurrentLSN string `json:"currentLsn"` // primary: pg_current_wal_lsn; standby: last received
	ReplayLSN  string `json:"replayLsn,omitempty"`
	// Standby only.
	ReceiverStatus string     `json:"receiverStatus,omitempty"`
	LastMessage    *time.Time `json:"lastMessage,omitempty"`
	// Primary only.
	Replicas []Replica `json:"replicas,omitempty"`
	Slots    []Slot    `json:"slots,omitempty"`
}

// LSN is a WAL location as PostgreSQL prints it ("16/B374D848").
type LSN uint64

// ParseLSN parses "X/Y".
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	return LSN(h<<32 | l), nil
}

func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xffffffff) }

// SlotName is the replication slot of the standby instance uid on its primary, and the
// application_name it streams with, so that the primary's pg_stat_replication row and slot
// can be matched to it. Fog's slots all begin with "fog_".
func SlotName(uid string) string { return "fog_" + strings.ReplaceAll(uid, "-", "") }
