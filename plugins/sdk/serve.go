package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	toolpb "github.com/crispy-enigma/crispy/plugins/sdk/proto"
)

// Serve runs t as a plugin and blocks until the host ends the process. Call it from main:
//
//	func main() { sdk.Serve(myTool{}) }
//
// Run by hand (without the host's handshake), the binary prints a note and exits with status 1.
//
// Serve keeps the plugin contained, whatever the host does: the process exits by itself when the host
// that launched it is gone (even a host killed with SIGKILL leaves no orphan behind), a cancelled call
// is answered at once (its tool function must still return soon: the host replaces a process whose
// cancelled calls keep running), and the memory ceiling the host sends becomes the Go runtime's soft
// memory limit, so the collector works harder before the host has to replace the process.
func Serve(t Tool) {
	go watchParent(context.Background(), hostPID(os.Getenv), parentPollInterval, os.Getppid, func(pid int) {
		fmt.Fprintf(os.Stderr, "crispy plugin: the host (process %d) is gone; exiting\n", pid)
		os.Exit(0)
	})
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake(),
		Plugins:         plugin.PluginSet{PluginName: &grpcPlugin{tool: t}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}

// grpcPlugin is the go-plugin glue: on the plugin side it serves tool (GRPCServer); on the host side
// it builds a client (GRPCClient).
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	tool Tool
}

func (p *grpcPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	toolpb.RegisterToolServer(s, &toolServer{tool: p.tool, broker: broker, desc: p.tool.Describe()})
	return nil
}

func (p *grpcPlugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &rpcClient{tool: toolpb.NewToolClient(c), broker: broker}, nil
}

// toolServer serves a Tool over gRPC inside the plugin process.
type toolServer struct {
	toolpb.UnimplementedToolServer
	tool   Tool
	desc   Description
	broker *plugin.GRPCBroker
	anon   atomic.Int64 // names calls from hosts that send no call id

	mu      sync.Mutex
	host    toolpb.HostClient // set by Attach
	running map[string]int    // call id -> tool functions still running under it
}

func (s *toolServer) Describe(context.Context, *toolpb.DescribeRequest) (*toolpb.Description, error) {
	d := s.desc
	return &toolpb.Description{
		Name: d.Name, Version: d.Version, Description: d.Description,
		InputSchema: d.InputSchema, OutputSchema: d.OutputSchema,
		Permissions: d.Permissions, TimeoutMs: d.Timeout.Milliseconds(), SdkProtocol: ProtocolVersion,
		MemoryLimitBytes: d.MemoryLimit,
	}, nil
}

func (s *toolServer) Attach(_ context.Context, req *toolpb.AttachRequest) (*toolpb.AttachResponse, error) {
	conn, err := s.broker.Dial(req.HostBrokerId)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "dial host callbacks: %v", err)
	}
	if req.MemoryLimitBytes > 0 {
		// A tenth below the ceiling: the collector tightens up before the host sees the process above it.
		debug.SetMemoryLimit(req.MemoryLimitBytes / 10 * 9)
	}
	s.mu.Lock()
	s.host = toolpb.NewHostClient(conn)
	s.mu.Unlock()
	return &toolpb.AttachResponse{}, nil
}

func (s *toolServer) Status(context.Context, *toolpb.StatusRequest) (*toolpb.StatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &toolpb.StatusResponse{CallIds: make([]string, 0, len(s.running))}
	for id, n := range s.running {
		r.InFlight += int32(n)
		r.CallIds = append(r.CallIds, id)
	}
	sort.Strings(r.CallIds)
	return r, nil
}

func (s *toolServer) begin(id string) {
	s.mu.Lock()
	if s.running == nil {
		s.running = map[string]int{}
	}
	s.running[id]++
	s.mu.Unlock()
}

func (s *toolServer) end(id string) {
	s.mu.Lock()
	if s.running[id]--; s.running[id] <= 0 {
		delete(s.running, id)
	}
	s.mu.Unlock()
}

// Execute runs the tool in its own goroutine and answers as soon as the call is cancelled, so a host
// waiting on a cancelled call is never held by a tool that is slow to notice. The call stays listed
// in Status until the tool's function returns: that is how the host tells a tool that honours
// cancellation from one that ignores it.
func (s *toolServer) Execute(ctx context.Context, req *toolpb.ExecuteRequest) (*toolpb.ExecuteResponse, error) {
	id := req.CallId
	if id == "" {
		id = fmt.Sprintf("anonymous-%d", s.anon.Add(1))
	}
	s.begin(id)
	type result struct {
		resp *toolpb.ExecuteResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		defer s.end(id)
		resp, err := s.run(withIncomingTrace(ctx), req)
		done <- result{resp, err}
	}()
	select {
	case r := <-done:
		return r.resp, r.err
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

func (s *toolServer) run(ctx context.Context, req *toolpb.ExecuteRequest) (resp *toolpb.ExecuteResponse, err error) {
	defer func() {
		if v := recover(); v != nil {
			resp, err = &toolpb.ExecuteResponse{Error: &toolpb.ToolError{Code: "tool_panic", Message: fmt.Sprint("the tool panicked: ", v)}}, nil
		}
	}()
	s.mu.Lock()
	hc := s.host
	s.mu.Unlock()
	caps := Capabilities{}
	if c := req.Capabilities; c != nil {
		caps = Capabilities{Complete: c.Complete, Embed: c.Embed, Ingest: c.Ingest}
	}
	h := &hostClient{client: hc, token: req.HostToken, caps: caps}
	out, terr := s.tool.Execute(ctx, Request{Params: req.Params, TenantID: req.TenantId, RequestID: req.RequestId, UserID: req.UserId}, h)
	if terr != nil {
		if ctx.Err() != nil && errors.Is(terr, ctx.Err()) {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		var te *Error
		if errors.As(terr, &te) {
			return &toolpb.ExecuteResponse{Error: &toolpb.ToolError{Code: te.Code, Message: te.Message}}, nil
		}
		return &toolpb.ExecuteResponse{Error: &toolpb.ToolError{Code: "tool_error", Message: terr.Error()}}, nil
	}
	return &toolpb.ExecuteResponse{Result: out}, nil
}

// hostClient is the Host a tool sees; every call carries the call's capability token.
type hostClient struct {
	client toolpb.HostClient
	token  string
	caps   Capabilities
}

func (h *hostClient) Capabilities() Capabilities { return h.caps }

func (h *hostClient) Complete(ctx context.Context, req CompleteRequest) (Completion, error) {
	if h.client == nil {
		return Completion{}, ErrUnavailable
	}
	r, err := h.client.Complete(withOutgoingTrace(ctx), &toolpb.CompleteRequest{Token: h.token, System: req.System, Prompt: req.Prompt, MaxTokens: int32(req.MaxTokens)})
	if err != nil {
		return Completion{}, fromStatus("complete", err)
	}
	return Completion{Text: r.Text, Model: r.Model}, nil
}

func (h *hostClient) Embed(ctx context.Context, texts []string) (Embeddings, error) {
	if h.client == nil {
		return Embeddings{}, ErrUnavailable
	}
	r, err := h.client.Embed(withOutgoingTrace(ctx), &toolpb.EmbedRequest{Token: h.token, Texts: texts})
	if err != nil {
		return Embeddings{}, fromStatus("embed", err)
	}
	out := Embeddings{Model: r.Model, Vectors: make([][]float32, len(r.Vectors))}
	for i, v := range r.Vectors {
		out.Vectors[i] = v.Values
	}
	return out, nil
}

func (h *hostClient) Ingest(ctx context.Context, doc Document) (IngestResult, error) {
	if h.client == nil {
		return IngestResult{}, ErrUnavailable
	}
	var md []byte
	if len(doc.Metadata) > 0 {
		b, err := json.Marshal(doc.Metadata)
		if err != nil {
			return IngestResult{}, fmt.Errorf("ingest: metadata: %w", err)
		}
		md = b
	}
	r, err := h.client.Ingest(withOutgoingTrace(ctx), &toolpb.IngestRequest{Token: h.token, DocId: doc.DocID, Text: doc.Text, Title: doc.Title,
		Source: doc.Source, Url: doc.URL, Metadata: md, ChunkSize: int32(doc.ChunkSize)})
	if err != nil {
		return IngestResult{}, fromStatus("ingest", err)
	}
	return IngestResult{DocID: r.DocId, Chunks: int(r.Chunks), EmbeddingModel: r.EmbeddingModel}, nil
}

// fromStatus maps the host's gRPC refusals to the SDK's sentinel errors.
func fromStatus(op string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("host %s: %w", op, err)
	}
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Errorf("host %s: %s: %w", op, st.Message(), ErrUnavailable)
	case codes.PermissionDenied:
		return fmt.Errorf("host %s: %s: %w", op, st.Message(), ErrPermissionDenied)
	case codes.Unauthenticated:
		return fmt.Errorf("host %s: %s: %w", op, st.Message(), ErrTokenRefused)
	case codes.Canceled:
		return fmt.Errorf("host %s: %w", op, context.Canceled)
	case codes.DeadlineExceeded:
		return fmt.Errorf("host %s: %w", op, context.DeadlineExceeded)
	case codes.InvalidArgument:
		return &Error{Code: "invalid_argument", Message: fmt.Sprintf("host %s: %s", op, st.Message())}
	default:
		return fmt.Errorf("host %s: %s", op, st.Message())
	}
}
