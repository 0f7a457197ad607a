package hfhubtest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DirFiles reads the tree under dir into the files of a commit, keyed by slash-separated
// path, so a model directory written by a test (a diffusers pipeline) can be served as a
// repo. Weight files (.safetensors, .bin) are LFS files, as the Hub stores them; the rest
// are regular files.
func DirFiles(dir string) (map[string]File, error) {
	files := map[string]File{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		lfs := strings.HasSuffix(p, ".safetensors") || strings.HasSuffix(p, ".bin")
		files[filepath.ToSlash(rel)] = File{Content: b, LFS: lfs}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("hfhubtest: %w", err)
	}
	return files, nil
}
