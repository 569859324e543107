package store

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// EachCertificate calls fn for every issued certificate, in serial order,
// inside one read transaction (fn must not call the store). It serves the
// CA lifecycle views: counts per generation, certificates due for renewal,
// and the revoked entries of a CRL. An error from fn stops the walk and is
// returned.
func (db *DB) EachCertificate(ctx context.Context, fn func(Certificate) error) error {
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketCertificates)).ForEach(func(k, v []byte) error {
			var rec certificateRecordV1
			if err := decodeRecord(v, &rec); err != nil {
				return fmt.Errorf("certificate %x: %w", k, err)
			}
			c, err := rec.certificate()
			if err != nil {
				return err
			}
			return fn(c)
		})
	})
	if err != nil {
		return fmt.Errorf("each certificate: %w", err)
	}
	return nil
}
