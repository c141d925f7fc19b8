package main

import (
	"fmt"
	"io"

	"github.com/bettertest/bettertest"
)

const versionUsage = `Usage: bettertest version

Print the version of this binary.
`

func runVersion(args []string, stdout io.Writer) error {
	fs := newFlagSet("version", versionUsage, stdout)
	if err := parse(fs, args); err != nil {
		return err
	}
	_, err := fmt.Fprintf(stdout, "bettertest %s\n", bettertest.Version)
	return err
}
