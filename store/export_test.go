package store

import bolt "go.etcd.io/bbolt"

// Bolt exposes the underlying bbolt handle to the bbolt-specific tests.
func Bolt(db *DB) *bolt.DB { return db.bolt }
