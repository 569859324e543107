package store_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/gatehouse-pki/gatehouse/store"
)

func putFirstGeneration(t *testing.T, db *store.DB) {
	t.Helper()
	if err := db.PutGeneration(t.Context(), store.Generation{ID: "g1", Certificate: []byte("old"), KeyRef: "old-key.pem", Active: true}); err != nil {
		t.Fatal(err)
	}
}

// steps returns the rollover record at each recorded step.
func rolloverSteps() []store.Rollover {
	r := store.Rollover{From: "g1", To: "g2", KeyRef: "g2-key.pem", Step: store.RolloverKeyGenerated}
	out := []store.Rollover{r}
	r.Step, r.NewWithNew = store.RolloverNewWithNewSigned, []byte("nwn")
	out = append(out, r)
	r.Step, r.NewWithOld = store.RolloverNewWithOldSigned, []byte("nwo")
	out = append(out, r)
	r.Step, r.OldWithNew = store.RolloverOldWithNewSigned, []byte("own")
	return append(out, r)
}

func TestDB_RolloverSteps(t *testing.T) {
	t.Parallel()
	db, _ := openTemp(t)
	ctx := t.Context()
	putFirstGeneration(t, db)
	steps := rolloverSteps()
	if _, err := db.SwitchGeneration(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("switch without a rollover: %v, want ErrNotFound", err)
	}
	if err := db.RecordRollover(ctx, steps[1]); !errors.Is(err, store.ErrConflict) {
		t.Errorf("start at step 2: %v, want ErrConflict", err)
	}
	wrongFrom := steps[0]
	wrongFrom.From = "g0"
	if err := db.RecordRollover(ctx, wrongFrom); !errors.Is(err, store.ErrConflict) {
		t.Errorf("from an inactive generation: %v, want ErrConflict", err)
	}
	for i, r := range steps {
		if err := db.RecordRollover(ctx, r, store.Event{Type: "ca-rollover-step", Fields: map[string]string{"step": string(r.Step)}}); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if err := db.RecordRollover(ctx, r); !errors.Is(err, store.ErrConflict) {
			t.Errorf("step %d twice: %v, want ErrConflict", i, err)
		}
		got, err := db.CurrentRollover(ctx)
		if err != nil || got.Step != r.Step {
			t.Fatalf("current = %+v, %v", got, err)
		}
		if i < len(steps)-1 {
			if _, err := db.SwitchGeneration(ctx); !errors.Is(err, store.ErrConflict) {
				t.Errorf("switch at %s: %v, want ErrConflict", r.Step, err)
			}
			if err := db.FinishRollover(ctx); !errors.Is(err, store.ErrConflict) {
				t.Errorf("finish at %s: %v, want ErrConflict", r.Step, err)
			}
		}
	}
	// A record that changes an earlier field is refused.
	bad := steps[3]
	bad.Step = store.RolloverKeyGenerated
	if err := db.RecordRollover(ctx, bad); err == nil {
		t.Error("a record with certificates at key-generated was accepted")
	}
	g, err := db.SwitchGeneration(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g.ID != "g2" || !g.Active || g.Previous != "g1" || len(g.LinkCertificates) != 2 || string(g.Certificate) != "nwn" {
		t.Errorf("switched generation %+v", g)
	}
	gens, err := db.Generations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	active := 0
	for _, g := range gens {
		if g.Active {
			active++
		}
	}
	if len(gens) != 2 || active != 1 {
		t.Errorf("generations %d, active %d", len(gens), active)
	}
	if err := db.FinishRollover(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CurrentRollover(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after finish: %v, want ErrNotFound", err)
	}
	// A second rollover starts from g2.
	next := store.Rollover{From: "g2", To: "g3", KeyRef: "g3-key.pem", Step: store.RolloverKeyGenerated}
	if err := db.RecordRollover(ctx, next); err != nil {
		t.Fatal(err)
	}
}

// TestDB_RolloverSurvivesReopen: each step is on disk when RecordRollover
// returns.
func TestDB_RolloverSurvivesReopen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	for i, r := range rolloverSteps() {
		db, err := store.Open(path, store.Options{Clock: fixedClock()})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			putFirstGeneration(t, db)
		}
		if err := db.RecordRollover(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		db, err = store.Open(path, store.Options{Clock: fixedClock()})
		if err != nil {
			t.Fatal(err)
		}
		got, err := db.CurrentRollover(t.Context())
		_ = db.Close()
		if err != nil || got.Step != r.Step || string(got.OldWithNew) != string(r.OldWithNew) {
			t.Fatalf("after reopen at %s: %+v, %v", r.Step, got, err)
		}
	}
}
