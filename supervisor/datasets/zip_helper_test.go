package datasets

import (
	"archive/zip"
	"fmt"
	"io"
)

// newZip writes an archive of n small text files to w.
func newZip(w io.Writer, n int) error {
	zw := zip.NewWriter(w)
	for i := range n {
		f, err := zw.Create(fmt.Sprintf("f%d.txt", i))
		if err != nil {
			return err
		}
		f.Write([]byte("x"))
	}
	return zw.Close()
}
