package webui

import (
	"net/url"
	"os"
)

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// mkTemp is the shared apiserver's state directory; TestMain's stop leaves it to the OS temp cleaner.
func mkTemp() (string, error) { return os.MkdirTemp("", "edgenet-webui-test-") }
