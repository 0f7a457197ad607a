package safetensors

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Checkpoint is an open checkpoint of either layout: a TensorSource that must be closed.
type Checkpoint interface {
	TensorSource
	Close() error
}

// OpenCheckpoint opens the weights a diffusers/transformers component directory names by
// base ("diffusion_pytorch_model", "model"): "<base>.safetensors" when it exists, otherwise
// the sharded "<base>.safetensors.index.json". opt.Map selects memory mapping for either.
// When neither exists the error wraps os.ErrNotExist.
func OpenCheckpoint(dir, base string, opt ShardOptions) (Checkpoint, error) {
	single := filepath.Join(dir, base+".safetensors")
	if _, err := os.Stat(single); err == nil {
		if opt.Map {
			return OpenMapped(single)
		}
		return Open(single)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	index := filepath.Join(dir, base+IndexSuffix)
	if _, err := os.Stat(index); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("safetensors: neither %s nor %s: %w", single, index, os.ErrNotExist)
		}
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	return OpenSharded(index, opt)
}
