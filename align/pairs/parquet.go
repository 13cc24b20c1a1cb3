package pairs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// IsParquet reports whether path names a Parquet file (by its extension).
func IsParquet(path string) bool { return strings.HasSuffix(strings.ToLower(path), ".parquet") }

// ParquetRows calls fn with each row of a Parquet file as a JSON object
// (row numbers from 1), in the columns' own names: the form the hub's
// preference sets take (TRL's standard and conversational columns: strings,
// or lists of {role, content} structs; Anthropic's HH text in chosen and
// rejected). Byte-array columns without a string type are read as text when
// they are valid UTF-8.
func ParquetRows(path string, fn func(row []byte, n int) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a folder", path)
	}
	pf, err := openParquet(f, st.Size())
	if err != nil {
		return fmt.Errorf("%s: not a readable Parquet file: %w", path, err)
	}
	r := parquet.NewReader(pf)
	defer r.Close()
	for n := 1; ; n++ {
		row := map[string]any{}
		if err := readRow(r, &row); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("%s: row %d: %w", path, n, err)
		}
		b, err := json.Marshal(jsonable(row))
		if err != nil {
			return fmt.Errorf("%s: row %d: %w", path, n, err)
		}
		if err := fn(b, n); err != nil {
			return err
		}
	}
}

// openParquet opens a Parquet file; the library's panics on corrupt input
// become errors.
func openParquet(f *os.File, size int64) (pf *parquet.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return parquet.OpenFile(f, size)
}

func readRow(r *parquet.Reader, row *map[string]any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	return r.Read(row)
}

// jsonable turns a reconstructed Parquet value into one encoding/json
// writes as the dataset means it: byte arrays as text.
func jsonable(v any) any {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = jsonable(e)
		}
		return x
	}
	return v
}
