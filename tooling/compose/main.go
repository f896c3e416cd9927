// Command compose-check validates docker-compose.yml with compose-go, the library Docker Compose
// itself loads files with (JSON Schema plus its consistency checks), and prints the services'
// commands as JSON so the Python test can check that each one is a real `mesh` subcommand.
//
//	go run . validate ../../docker-compose.yml   # prints {"services": {"name": {"command": [...]}}}
//	go run . schema                              # prints the Compose Specification JSON Schema
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/schema"
)

type service struct {
	Image      string   `json:"image,omitempty"`
	Build      bool     `json:"build"`
	Command    []string `json:"command"`
	Entrypoint []string `json:"entrypoint"`
	Restart    string   `json:"restart,omitempty"`
	Healthy    bool     `json:"healthcheck"`
	DependsOn  []string `json:"depends_on"`
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: compose-check validate FILE | schema")
	}
	switch os.Args[1] {
	case "schema":
		fmt.Print(schema.Schema)
	case "validate":
		if len(os.Args) != 3 {
			fail("usage: compose-check validate FILE")
		}
		validate(os.Args[2])
	default:
		fail("unknown command " + os.Args[1])
	}
}

func validate(path string) {
	abs, err := filepath.Abs(path)
	if err != nil {
		fail(err.Error())
	}
	opts, err := cli.NewProjectOptions(
		[]string{abs},
		cli.WithWorkingDirectory(filepath.Dir(abs)),
		cli.WithName("mesh"),
		cli.WithConsistency(true),
		cli.WithInterpolation(true),
	)
	if err != nil {
		fail(err.Error())
	}
	project, err := cli.ProjectFromOptions(context.Background(), opts)
	if err != nil {
		fail(err.Error())
	}
	out := map[string]service{}
	for name, svc := range project.Services {
		deps := []string{}
		for dep := range svc.DependsOn {
			deps = append(deps, dep)
		}
		out[name] = service{
			Image:      svc.Image,
			Build:      svc.Build != nil,
			Command:    svc.Command,
			Entrypoint: svc.Entrypoint,
			Restart:    svc.Restart,
			Healthy:    svc.HealthCheck != nil && !svc.HealthCheck.Disable,
			DependsOn:  deps,
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(map[string]any{"services": out}); err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "compose-check: "+msg)
	os.Exit(1)
}
