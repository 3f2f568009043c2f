// Command pulumi-resource-command is the command-provider stand-in: a
// clean-room Pulumi resource provider plugin that implements the two
// resource types shimless uses, command:remote:Command and
// command:local:Command, with pulumi-command's documented semantics. It is
// installed as plugin "command" version 1.2.1, the version the pulumi-command
// Python SDK asks for.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/emptypb"
)

const (
	providerName    = "command"
	providerVersion = "1.2.1"
	displayName     = "command-provider stand-in"

	typeRemote = "command:remote:Command"
	typeLocal  = "command:local:Command"

	// An environment variable larger than this cannot be passed to exec
	// (Linux MAX_ARG_STRLEN is 128 KiB); such previous outputs are not added.
	maxEnvValue = 96 * 1024
)

// outputOnly are the keys of the state that are outputs, not inputs.
var outputOnly = map[resource.PropertyKey]bool{"stdout": true, "stderr": true, "archive": true, "assets": true}

type standin struct {
	pulumirpc.UnimplementedResourceProviderServer

	mu     sync.Mutex
	host   *provider.HostClient
	cancel context.CancelFunc
	ctx    context.Context // cancelled by the Cancel RPC
}

func newStandin(host *provider.HostClient) *standin {
	ctx, cancel := context.WithCancel(context.Background())
	return &standin{host: host, ctx: ctx, cancel: cancel}
}

var (
	unmarshalOpts = plugin.MarshalOptions{
		Label: "command-standin", KeepUnknowns: true, KeepSecrets: true, KeepResources: true, SkipNulls: true,
	}
	marshalOpts = plugin.MarshalOptions{
		Label: "command-standin", KeepUnknowns: true, KeepSecrets: true, KeepResources: true, SkipNulls: true,
	}
)

// logger returns a function that sends one line to the engine as an info
// message for the resource.
func (p *standin) logger(urn string) logFunc {
	p.mu.Lock()
	host := p.host
	p.mu.Unlock()
	if host == nil {
		return nil
	}
	return func(line string) {
		_ = host.Log(context.Background(), diag.Info, resource.URN(urn), line)
	}
}

// runCtx is cancelled with the request, by the Cancel RPC, or at the
// operation's timeout (seconds; 0: none).
func (p *standin) runCtx(ctx context.Context, timeout float64) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.ctx, cancel)
	if timeout > 0 {
		var cancelT context.CancelFunc
		ctx, cancelT = context.WithTimeout(ctx, time.Duration(timeout*float64(time.Second)))
		return ctx, func() { cancelT(); stop(); cancel() }
	}
	return ctx, func() { stop(); cancel() }
}

func resourceType(urn, typ string) string {
	if typ != "" {
		return typ
	}
	return string(resource.URN(urn).Type())
}

// run runs one command string for the resource type.
func (p *standin) run(ctx context.Context, typ, urn, command string, props resource.PropertyMap,
	extraEnv map[string]string,
) (string, string, error) {
	log := p.logger(urn)
	switch typ {
	case typeRemote:
		return runRemote(ctx, command, props, extraEnv, log)
	case typeLocal:
		return runLocal(ctx, command, props, extraEnv, log)
	default:
		return "", "", fmt.Errorf("%s: unknown resource type %q", displayName, typ)
	}
}

// previousOutputEnv is PULUMI_COMMAND_STDOUT/STDERR from the previous state,
// when addPreviousOutputInEnv (default true) asks for it.
func (p *standin) previousOutputEnv(urn string, inputs, state resource.PropertyMap) map[string]string {
	env := map[string]string{}
	if !getBool(inputs, "addPreviousOutputInEnv", true) || state == nil {
		return env
	}
	for key, name := range map[string]string{"stdout": "PULUMI_COMMAND_STDOUT", "stderr": "PULUMI_COMMAND_STDERR"} {
		v := getString(state, key)
		if len(v) > maxEnvValue {
			if log := p.logger(urn); log != nil {
				log(fmt.Sprintf("%s: previous %s is %d bytes, too large for %s; not set", displayName, key, len(v), name))
			}
			continue
		}
		env[name] = v
	}
	return env
}

func withOutputs(inputs resource.PropertyMap, stdout, stderr resource.PropertyValue) resource.PropertyMap {
	out := inputs.Copy()
	for k := range outputOnly {
		delete(out, k)
	}
	out["stdout"] = stdout
	out["stderr"] = stderr
	return out
}

func unknown() resource.PropertyValue {
	return resource.MakeComputed(resource.NewStringProperty(""))
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// --- RPCs -------------------------------------------------------------------

func (p *standin) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: providerVersion}, nil
}

func (p *standin) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	return &pulumirpc.GetSchemaResponse{
		Schema: fmt.Sprintf(`{"name":%q,"version":%q}`, providerName, providerVersion),
	}, nil
}

func (p *standin) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *standin) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (p *standin) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{AcceptSecrets: true, AcceptResources: true, SupportsPreview: true}, nil
}

func (p *standin) Attach(_ context.Context, req *pulumirpc.PluginAttach) (*emptypb.Empty, error) {
	host, err := provider.NewHostClient(req.GetAddress())
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.host = host
	p.mu.Unlock()
	return &emptypb.Empty{}, nil
}

func (p *standin) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	p.cancel()
	return &emptypb.Empty{}, nil
}

func (p *standin) GetMapping(context.Context, *pulumirpc.GetMappingRequest) (*pulumirpc.GetMappingResponse, error) {
	return &pulumirpc.GetMappingResponse{}, nil
}

func (p *standin) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *standin) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	olds, err := plugin.UnmarshalProperties(req.GetOldInputs(), unmarshalOpts)
	if err != nil {
		return nil, err
	}
	if len(olds) == 0 {
		// No recorded old inputs: the old state's input keys.
		if olds, err = plugin.UnmarshalProperties(req.GetOlds(), unmarshalOpts); err != nil {
			return nil, err
		}
	}
	news, err := plugin.UnmarshalProperties(req.GetNews(), unmarshalOpts)
	if err != nil {
		return nil, err
	}
	ignore := map[string]bool{}
	for _, k := range req.GetIgnoreChanges() {
		ignore[k] = true
	}
	keys := map[resource.PropertyKey]bool{}
	for k := range olds {
		keys[k] = true
	}
	for k := range news {
		keys[k] = true
	}
	var diffs, replaces []string
	detailed := map[string]*pulumirpc.PropertyDiff{}
	for k := range keys {
		if outputOnly[k] || ignore[string(k)] {
			continue
		}
		ov, ook := get(olds, string(k))
		nv, nok := get(news, string(k))
		if sameValue(ov, nv, ook, nok) {
			continue
		}
		kind := pulumirpc.PropertyDiff_UPDATE
		switch {
		case !ook:
			kind = pulumirpc.PropertyDiff_ADD
		case !nok:
			kind = pulumirpc.PropertyDiff_DELETE
		}
		if k == "triggers" {
			replaces = append(replaces, string(k))
			kind = map[pulumirpc.PropertyDiff_Kind]pulumirpc.PropertyDiff_Kind{
				pulumirpc.PropertyDiff_ADD:    pulumirpc.PropertyDiff_ADD_REPLACE,
				pulumirpc.PropertyDiff_DELETE: pulumirpc.PropertyDiff_DELETE_REPLACE,
				pulumirpc.PropertyDiff_UPDATE: pulumirpc.PropertyDiff_UPDATE_REPLACE,
			}[kind]
		}
		diffs = append(diffs, string(k))
		detailed[string(k)] = &pulumirpc.PropertyDiff{Kind: kind, InputDiff: true}
	}
	sort.Strings(diffs)
	if len(diffs) == 0 {
		return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE, HasDetailedDiff: true}, nil
	}
	return &pulumirpc.DiffResponse{
		Changes:             pulumirpc.DiffResponse_DIFF_SOME,
		Diffs:               diffs,
		Replaces:            replaces,
		DeleteBeforeReplace: false,
		DetailedDiff:        detailed,
		HasDetailedDiff:     true,
	}, nil
}

func (p *standin) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	inputs, err := plugin.UnmarshalProperties(req.GetProperties(), unmarshalOpts)
	if err != nil {
		return nil, err
	}
	typ := resourceType(req.GetUrn(), req.GetType())
	if req.GetPreview() {
		out, err := plugin.MarshalProperties(withOutputs(inputs, unknown(), unknown()), marshalOpts)
		return &pulumirpc.CreateResponse{Properties: out}, err
	}
	var stdout, stderr string
	if command := getString(inputs, "create"); command != "" {
		rctx, cancel := p.runCtx(ctx, req.GetTimeout())
		defer cancel()
		stdout, stderr, err = p.run(rctx, typ, req.GetUrn(), command, inputs, nil)
		if err != nil {
			return nil, err
		}
	}
	out, err := plugin.MarshalProperties(withOutputs(inputs,
		resource.NewStringProperty(stdout), resource.NewStringProperty(stderr)), marshalOpts)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: newID(), Properties: out}, nil
}

func (p *standin) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: req.GetInputs()}, nil
}

func (p *standin) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	news, err := plugin.UnmarshalProperties(req.GetNews(), unmarshalOpts)
	if err != nil {
		return nil, err
	}
	olds, err := plugin.UnmarshalProperties(req.GetOlds(), unmarshalOpts)
	if err != nil {
		return nil, err
	}
	typ := resourceType(req.GetUrn(), req.GetType())
	if req.GetPreview() {
		out, err := plugin.MarshalProperties(withOutputs(news, unknown(), unknown()), marshalOpts)
		return &pulumirpc.UpdateResponse{Properties: out}, err
	}
	command := getString(news, "update")
	if command == "" {
		command = getString(news, "create")
	}
	var stdout, stderr string
	if command != "" {
		rctx, cancel := p.runCtx(ctx, req.GetTimeout())
		defer cancel()
		env := p.previousOutputEnv(req.GetUrn(), news, olds)
		stdout, stderr, err = p.run(rctx, typ, req.GetUrn(), command, news, env)
		if err != nil {
			return nil, err
		}
	}
	out, err := plugin.MarshalProperties(withOutputs(news,
		resource.NewStringProperty(stdout), resource.NewStringProperty(stderr)), marshalOpts)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: out}, nil
}

func (p *standin) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	state, err := plugin.UnmarshalProperties(req.GetProperties(), unmarshalOpts)
	if err != nil {
		return nil, err
	}
	command := getString(state, "delete")
	if command == "" {
		return &emptypb.Empty{}, nil
	}
	rctx, cancel := p.runCtx(ctx, req.GetTimeout())
	defer cancel()
	env := p.previousOutputEnv(req.GetUrn(), state, state)
	if _, _, err := p.run(rctx, resourceType(req.GetUrn(), req.GetType()), req.GetUrn(), command, state, env); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// --- main -------------------------------------------------------------------

const usage = `pulumi-resource-command: the command-provider stand-in (plugin "command" %s)

A clean-room Pulumi resource provider plugin implementing command:remote:Command
(over SSH) and command:local:Command with pulumi-command's documented semantics.
It is started by the Pulumi engine; it is not meant to be run by hand.

Usage: pulumi-resource-command [-tracing ENDPOINT] [ENGINE-ADDRESS]
       pulumi-resource-command --version
`

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "--version" || os.Args[1] == "version") {
		fmt.Printf("%s %s\n", displayName, providerVersion)
		return
	}
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), usage, providerVersion)
		flag.PrintDefaults()
	}
	err := provider.Main(providerName, func(host *provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		return newStandin(host), nil
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", displayName, strings.TrimSpace(err.Error()))
		os.Exit(1)
	}
}
