package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestBundleOf(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"create", "--bundle", "/run/b1", "id"}, "/run/b1"},
		{[]string{"--root", "/run/runc", "--log", "/x.log", "create", "-b", "/run/b2", "id"}, "/run/b2"},
		{[]string{"--root", "create", "run", "--bundle=/run/b3", "id"}, "/run/b3"}, // "create" is --root's value
		{[]string{"run", "id"}, "."},
		{[]string{"--log-format", "json", "start", "id"}, ""},
		{[]string{"state", "--bundle", "/run/b4", "id"}, ""},
		{[]string{"delete", "create"}, ""}, // the command is delete; "create" is its container id
		{[]string{}, ""},
	}
	for _, c := range cases {
		if got := bundleOf(c.args); got != c.want {
			t.Errorf("bundleOf(%q) = %q, want %q", c.args, got, c.want)
		}
	}
}

func spec(t *testing.T, text string) map[string]any {
	t.Helper()
	var s map[string]any
	if err := json.Unmarshal([]byte(text), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFitSpecRaisesOOMScoreAdjToTheFloorOnly(t *testing.T) {
	low := spec(t, `{"process": {"oomScoreAdj": -998}}`)
	if !fitSpec(low, 0, nil) || low["process"].(map[string]any)["oomScoreAdj"] != 0 {
		t.Errorf("-998 under floor 0: %v", low)
	}
	high := spec(t, `{"process": {"oomScoreAdj": 500}}`)
	if fitSpec(high, 0, nil) || high["process"].(map[string]any)["oomScoreAdj"] != 500.0 {
		t.Errorf("500 over floor 0 must stay: %v", high)
	}
	none := spec(t, `{"process": {}}`)
	if fitSpec(none, 0, nil) {
		t.Errorf("no oomScoreAdj: nothing to change")
	}
}

func TestFitSpecDropsOnlyLimitsOfMissingControllers(t *testing.T) {
	s := spec(t, `{"linux": {"resources": {
		"memory": {"limit": 1}, "pids": {"limit": 5},
		"cpu": {"shares": 2, "cpus": "0-1", "quota": 1000},
		"unified": {"memory.high": "1", "io.weight": "10"}}}}`)
	changed := fitSpec(s, 0, map[string]bool{"pids": true, "cpuset": true, "io": true})
	if !changed {
		t.Fatal("limits of missing controllers must be dropped")
	}
	want := spec(t, `{"linux": {"resources": {
		"pids": {"limit": 5}, "cpu": {"cpus": "0-1"}, "unified": {"io.weight": "10"}}}}`)
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got %v, want %v", s, want)
	}
	all := spec(t, `{"linux": {"resources": {"memory": {"limit": 1}, "cpu": {"shares": 2}}}}`)
	if fitSpec(all, 0, map[string]bool{"memory": true, "cpu": true}) {
		t.Errorf("every controller offered: nothing to drop")
	}
	if fitSpec(all, 0, nil) {
		t.Errorf("not a cgroup2 mount (nil): nothing is dropped")
	}
}

func TestFitBundleRewritesConfigOnlyWhenChanged(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	floor, err := ownOOMScoreAdj()
	if err != nil {
		t.Skip("no /proc/self/oom_score_adj")
	}
	unchanged := []byte(`{"process":{"oomScoreAdj":1000}, "keep": "exactly"}`)
	if err := os.WriteFile(path, unchanged, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := fitBundle(dir); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != string(unchanged) {
		t.Errorf("an unchanged config must keep its bytes: %s", got)
	}
	if err := os.WriteFile(path, []byte(`{"process":{"oomScoreAdj":-1000}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := fitBundle(dir); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	got := spec(t, string(raw))["process"].(map[string]any)["oomScoreAdj"].(float64)
	if int(got) != floor && floor > -1000 {
		t.Errorf("oomScoreAdj %v, want the caller's own %d", got, floor)
	}
	if err := fitBundle(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("a bundle without config.json must fail")
	}
}
