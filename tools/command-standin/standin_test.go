package main

import (
	"context"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/structpb"
)

const testURN = "urn:pulumi:dev::p::command:local:Command::c"

func mustMarshal(t *testing.T, m resource.PropertyMap) *structpb.Struct {
	t.Helper()
	s, err := plugin.MarshalProperties(m, marshalOpts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func diff(t *testing.T, olds, news resource.PropertyMap) *pulumirpc.DiffResponse {
	t.Helper()
	resp, err := newStandin(nil).Diff(context.Background(), &pulumirpc.DiffRequest{
		Urn: testURN, Olds: mustMarshal(t, olds), News: mustMarshal(t, news),
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func base() resource.PropertyMap {
	return resource.PropertyMap{
		"create":   resource.NewStringProperty("echo hi"),
		"stdin":    resource.MakeSecret(resource.NewStringProperty("s")),
		"triggers": resource.NewArrayProperty([]resource.PropertyValue{resource.NewStringProperty("t1")}),
	}
}

func TestDiff(t *testing.T) {
	state := withOutputs(base(), resource.NewStringProperty("out"), resource.NewStringProperty(""))

	if r := diff(t, state, base()); r.Changes != pulumirpc.DiffResponse_DIFF_NONE {
		t.Fatalf("no change: got %v %v", r.Changes, r.Diffs)
	}

	plainStdin := base()
	plainStdin["stdin"] = resource.NewStringProperty("s") // secretness alone is no change
	if r := diff(t, state, plainStdin); r.Changes != pulumirpc.DiffResponse_DIFF_NONE {
		t.Fatalf("secret vs plain: got %v %v", r.Changes, r.Diffs)
	}

	changed := base()
	changed["stdin"] = resource.NewStringProperty("other")
	r := diff(t, state, changed)
	if r.Changes != pulumirpc.DiffResponse_DIFF_SOME || len(r.Replaces) != 0 || strings.Join(r.Diffs, ",") != "stdin" {
		t.Fatalf("stdin change: got %v replaces=%v diffs=%v", r.Changes, r.Replaces, r.Diffs)
	}

	trig := base()
	trig["triggers"] = resource.NewArrayProperty([]resource.PropertyValue{resource.NewStringProperty("t2")})
	r = diff(t, state, trig)
	if strings.Join(r.Replaces, ",") != "triggers" || r.DetailedDiff["triggers"].Kind != pulumirpc.PropertyDiff_UPDATE_REPLACE {
		t.Fatalf("trigger change: got replaces=%v detailed=%v", r.Replaces, r.DetailedDiff)
	}

	unknownNew := base()
	unknownNew["create"] = resource.MakeComputed(resource.NewStringProperty(""))
	if r := diff(t, state, unknownNew); strings.Join(r.Diffs, ",") != "create" {
		t.Fatalf("unknown input: got %v", r.Diffs)
	}
}

func TestLocalRun(t *testing.T) {
	var logged []string
	props := resource.PropertyMap{
		"stdin":       resource.MakeSecret(resource.NewStringProperty("in")),
		"environment": resource.NewObjectProperty(resource.PropertyMap{"A": resource.NewStringProperty("b")}),
	}
	out, errOut, err := runLocal(context.Background(), `echo "$(cat) $A"; echo e >&2; printf tail`, props, nil,
		func(l string) { logged = append(logged, l) })
	if err != nil || out != "in b\ntail" || errOut != "e" {
		t.Fatalf("got %q %q %v", out, errOut, err)
	}
	if len(logged) != 3 {
		t.Fatalf("logged %q", logged)
	}
	_, _, err = runLocal(context.Background(), `echo o; echo e >&2; exit 4`, resource.PropertyMap{}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "exit status 4") || !strings.Contains(err.Error(), "o\ne") {
		t.Fatalf("failure: %v", err)
	}
}
