package train

import "github.com/align-dev/align/align/run"

// Test helpers over align/run's run directory and checkpoints.

func listCheckpoints(dir string) []string { return run.ListCheckpoints(dir) }

func readJSON(path string, v any) error { return run.ReadJSON(path, v) }

// ckptState is what the tests read of a restored checkpoint.
type ckptState struct{ step int }

// loadCheckpoint restores the newest readable checkpoint of out into tr.
func loadCheckpoint(out string, tr Trainer) (ckptState, string, error) {
	snap, note, err := run.LoadNewest(out, []run.Set{tr})
	if err != nil {
		return ckptState{}, "", err
	}
	return ckptState{step: snap.Step}, note, nil
}
