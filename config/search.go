package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// searchPaths are the places Search tries, in order, without --config.
var searchPaths = []string{"/etc/yedge/yedge.yaml", "configs/yedge.yaml"}

// Search finds the configuration file: explicit (the --config flag) when
// given, which must then exist; else the first of /etc/yedge/yedge.yaml and
// ./configs/yedge.yaml that exists. The error lists the places tried.
func Search(explicit string) (string, error) {
	if explicit != "" {
		st, err := os.Stat(explicit)
		switch {
		case err != nil:
			return "", fmt.Errorf("config %s: %w", explicit, pathErr(err))
		case st.IsDir():
			return "", fmt.Errorf("config %s: is a folder, want a YAML file", explicit)
		}
		return explicit, nil
	}
	var tried []string
	for _, p := range searchPaths {
		st, err := os.Stat(p)
		if err == nil && !st.IsDir() {
			return p, nil
		}
		why := "not found"
		if err == nil {
			why = "a folder"
		} else if !errors.Is(err, os.ErrNotExist) {
			why = pathErr(err).Error()
		}
		tried = append(tried, p+" ("+why+")")
	}
	return "", fmt.Errorf("no configuration file: tried %s; give one with --config FILE", strings.Join(tried, ", "))
}
