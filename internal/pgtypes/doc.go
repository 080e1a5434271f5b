// Package pgtypes is what the control plane and the agents say to each other about
// PostgreSQL, without running it: WAL locations (LSN), the replication state an agent
// reports (Replication, Replica, Slot), the names of Fog's slots, the SCRAM verifier Fog
// stores instead of a password, and the TLS probe that tells whether a server is there. It
// imports nothing of Fog's, so the control plane depends on it and never on
// internal/postgres, which runs and queries PostgreSQL (DESIGN.md: "the control plane never
// reaches into PostgreSQL by itself").
package pgtypes
