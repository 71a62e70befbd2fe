// Package report appends a benchmark's markdown section to the results file.
package report

import (
	"fmt"
	"os"
)

// Append prints text and, when path is set, appends it to the file at path.
func Append(path, text string) error {
	fmt.Print(text)
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprint(f, text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
