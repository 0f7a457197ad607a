package encoders

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrIdentity is returned when an encoder's files cannot be identified (unreadable config,
// weights or tokenizer).
var ErrIdentity = errors.New("encoders: cannot identify the encoder's files")

// maxHeader bounds the safetensors header read for a file's identity: the format's own
// readers refuse larger headers, so a bigger length means the file is not safetensors.
const maxHeader = 100 << 20

// identity hashes what names an encoder into a hex string: a kind ("vae", "t5"), free-form
// settings that change its output (variant, preprocessing), whole small files (configs,
// tokenizer models, shard indexes) and the identities of its weight files (fileIdentity).
// Each part is length-prefixed so that no two lists hash alike.
type identity struct{ h io.Writer }

func newIdentity(kind string) (*identity, func() string) {
	h := sha256.New()
	id := &identity{h: h}
	id.str(kind)
	return id, func() string { return kind + ":" + hex.EncodeToString(h.Sum(nil)) }
}

func (id *identity) str(s string) {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
	id.h.Write(n[:])
	io.WriteString(id.h, s)
}

// content adds a small file whole (its name relative to the component and its bytes).
func (id *identity) content(name, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrIdentity, err)
	}
	id.str(name)
	id.str(string(b))
	return nil
}

// weights adds every weight file of a component directory whose name starts with base
// (model, diffusion_pytorch_model): single files, shards and shard indexes, variants
// included, in name order. Which of them a load reads depends on the variant, which the
// caller adds; files of other variants only make the identity stricter than needed.
func (id *identity) weights(dir, base string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrIdentity, err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, base) && (strings.HasSuffix(n, ".safetensors") || strings.Contains(n, ".safetensors.index")) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("%w: no %s weights in %s", ErrIdentity, base, dir)
	}
	slices.Sort(names)
	for _, n := range names {
		path := filepath.Join(dir, n)
		if !strings.HasSuffix(n, ".safetensors") { // a shard index: small JSON
			if err := id.content(n, path); err != nil {
				return err
			}
			continue
		}
		fid, err := fileIdentity(path)
		if err != nil {
			return err
		}
		id.str(n)
		id.str(fid)
	}
	return nil
}

// fileIdentity names a weights file without reading all of it.
//
// In the Hugging Face cache a snapshot entry is a link to blobs/<name>, and that name is the
// file's SHA-256 (LFS files, all weights) or its git blob id: the content hash for free,
// and the same for every copy of the same weights. Any other file is named by its
// safetensors header (tensor names, dtypes, shapes, offsets, metadata), its size and its
// modification time. Not by a hash of its content: that reads every byte of gigabytes of
// weights at each start, as long as loading them, only to find them unchanged; a rewritten
// file changes its mtime, and a different model its header or size.
func fileIdentity(path string) (string, error) {
	if target, err := filepath.EvalSymlinks(path); err == nil && target != path {
		if name := filepath.Base(target); isHexDigest(name) && filepath.Base(filepath.Dir(target)) == "blobs" {
			return "blob:" + name, nil
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrIdentity, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrIdentity, err)
	}
	var n [8]byte
	if _, err := io.ReadFull(f, n[:]); err != nil {
		return "", fmt.Errorf("%w: %s: safetensors header: %w", ErrIdentity, path, err)
	}
	size := binary.LittleEndian.Uint64(n[:])
	if size > maxHeader || int64(size) > st.Size()-8 {
		return "", fmt.Errorf("%w: %s: safetensors header of %d bytes in a file of %d", ErrIdentity, path, size, st.Size())
	}
	h := sha256.New()
	if _, err := io.CopyN(h, f, int64(size)); err != nil {
		return "", fmt.Errorf("%w: %s: safetensors header: %w", ErrIdentity, path, err)
	}
	return fmt.Sprintf("header:%x:size:%d:mtime:%d", h.Sum(nil), st.Size(), st.ModTime().UnixNano()), nil
}

// isHexDigest reports whether name is a SHA-256 (64) or git SHA-1 (40) hex digest, the
// names of the Hugging Face cache's blobs.
func isHexDigest(name string) bool {
	if len(name) != 64 && len(name) != 40 {
		return false
	}
	for _, c := range name {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
