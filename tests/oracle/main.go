// The Go originals, called through their public APIs, for tests/oracle/test_against_go.py:
// one JSON request per line on stdin ({"Op": ..., "Args": [...]}), one JSON answer per line.
// Built against the pinned Kubernetes (and the distribution/reference it requires).
package main

import (
	"bufio"
	"encoding/json"
	"os"

	dockerref "github.com/distribution/reference"
	v1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/credentialprovider"
	"k8s.io/kubernetes/pkg/credentialprovider/secrets"
	"k8s.io/kubernetes/pkg/util/parsers"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req struct {
			Op   string
			Args []string
		}
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			panic(err)
		}
		res := map[string]any{}
		a := req.Args
		switch req.Op {
		case "image":
			repo, tag, digest, err := parsers.ParseImageName(a[0])
			if err != nil {
				res["err"] = err.Error()
			} else {
				res["repo"], res["tag"], res["digest"] = repo, tag, digest
			}
		case "parse", "normalized":
			parse := dockerref.Parse
			if req.Op == "normalized" {
				parse = func(s string) (dockerref.Reference, error) {
					return dockerref.ParseNormalizedNamed(s)
				}
			}
			ref, err := parse(a[0])
			if err != nil {
				res["err"] = err.Error()
			} else {
				res["string"] = ref.String()
			}
		case "match":
			m, _ := credentialprovider.URLsMatchStr(a[0], a[1])
			res["match"] = m
		case "lookup":
			kr := &credentialprovider.BasicDockerKeyring{}
			for _, s := range a[1:] {
				kr.Add(nil, credentialprovider.DockerConfig{s: {Username: s}})
			}
			found, _ := kr.Lookup(a[0])
			users := []string{}
			for _, f := range found {
				users = append(users, f.Username)
			}
			res["servers"] = users
		case "secret":
			s := v1.Secret{Type: v1.SecretType(a[0]), Data: map[string][]byte{a[1]: []byte(a[2])}}
			_, err := secrets.MakeDockerKeyring([]v1.Secret{s}, nil)
			res["broken"] = err != nil
		}
		out.Encode(res)
	}
}
