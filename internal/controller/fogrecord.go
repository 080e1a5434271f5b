package controller

import "github.com/fogdb/fog/internal/group"

// The failover group record lives in package group, which the gateway reads too.
type (
	FailoverGroup = group.FailoverGroup
	Member        = group.Member
	GroupSide     = group.GroupSide
	Address       = group.Address
)

func fogKey(name string) string { return group.Key(name) }

// ListenerNames returns the read-write and read-only listener names of a group.
func ListenerNames(name, zone, suffix string) (rw, ro string) {
	return group.ListenerNames(name, zone, suffix)
}
