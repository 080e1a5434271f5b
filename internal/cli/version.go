package cli

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is what `fog version` reports: the module version and the VCS commit the binary was
// built from (from the build information Go records).
type Version struct {
	Fog       string `json:"fog"`
	Commit    string `json:"commit,omitempty"`
	Time      string `json:"commitTime,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// BuildVersion reads the build information of this binary.
func BuildVersion() Version {
	v := Version{Fog: "(devel)", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" {
		v.Fog = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func newVersionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show fog's version and the commit it was built from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := BuildVersion()
			if f := cmd.Flag("output"); f != nil && f.Changed {
				b, _ := json.Marshal(v)
				return g.print(b)
			}
			line := "fog " + v.Fog
			if v.Commit != "" {
				line += " (commit " + v.Commit
				if v.Modified {
					line += ", modified"
				}
				if v.Time != "" {
					line += ", " + v.Time
				}
				line += ")"
			}
			_, err := fmt.Fprintf(g.io.Out, "%s %s %s\n", line, v.GoVersion, v.Platform)
			return err
		},
	}
}
