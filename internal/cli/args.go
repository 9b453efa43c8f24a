package cli

import (
	"flag"
	"io"
	"strings"
)

// boolFlag is what flag's own bool values implement; such flags take no
// separate value argument.
type boolFlag interface{ IsBoolFlag() bool }

// permute splits args into flags (with their values) and positionals, so
// flags may come anywhere: before, between or after positional arguments.
// A flag that is not a bool takes the next argument as its value unless
// written --flag=value. "--" ends the flags. Unknown flags are passed on
// for fs.Parse to report.
func permute(fs *flag.FlagSet, args []string) (flags, positional []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		name := strings.TrimPrefix(a[1:], "-")
		if name == "" || name[0] == '-' || name[0] == '=' {
			// "---x" or "-=x": let fs.Parse report it.
			flags = append(flags, a)
			continue
		}
		if strings.Contains(name, "=") {
			flags = append(flags, a)
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			flags = append(flags, a)
			continue
		}
		if bf, ok := f.Value.(boolFlag); ok && bf.IsBoolFlag() {
			flags = append(flags, a)
			continue
		}
		if i+1 < len(args) {
			flags = append(flags, a, args[i+1])
			i++
			continue
		}
		flags = append(flags, a) // missing value: fs.Parse reports it
	}
	return flags, positional
}

// parseArgs parses args permuted with fs and returns the positionals.
// -h/--help returns flag.ErrHelp.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	flags, pos := permute(fs, args)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(flags); err != nil {
		return nil, err
	}
	// fs.Parse stops at nothing here, but a value-less "--" could leave
	// arguments behind; keep them as positionals.
	return append(pos, fs.Args()...), nil
}

// given reports which flags were set on the command line.
func given(fs *flag.FlagSet) map[string]bool {
	m := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { m[f.Name] = true })
	return m
}
