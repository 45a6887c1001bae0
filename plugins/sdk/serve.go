package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
func Serve(t Tool) {
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
	tool     Tool
	desc     Description
	broker   *plugin.GRPCBroker
	inFlight atomic.Int32

	mu   sync.Mutex
	host toolpb.HostClient // set by Attach
}

func (s *toolServer) Describe(context.Context, *toolpb.DescribeRequest) (*toolpb.Description, error) {
	d := s.desc
	return &toolpb.Description{
		Name: d.Name, Version: d.Version, Description: d.Description,
		InputSchema: d.InputSchema, OutputSchema: d.OutputSchema,
		Permissions: d.Permissions, TimeoutMs: d.Timeout.Milliseconds(), SdkProtocol: ProtocolVersion,
	}, nil
}

func (s *toolServer) Attach(_ context.Context, req *toolpb.AttachRequest) (*toolpb.AttachResponse, error) {
	conn, err := s.broker.Dial(req.HostBrokerId)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "dial host callbacks: %v", err)
	}
	s.mu.Lock()
	s.host = toolpb.NewHostClient(conn)
	s.mu.Unlock()
	return &toolpb.AttachResponse{}, nil
}

func (s *toolServer) Status(context.Context, *toolpb.StatusRequest) (*toolpb.StatusResponse, error) {
	return &toolpb.StatusResponse{InFlight: s.inFlight.Load()}, nil
}

func (s *toolServer) Execute(ctx context.Context, req *toolpb.ExecuteRequest) (resp *toolpb.ExecuteResponse, err error) {
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
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
	r, err := h.client.Complete(ctx, &toolpb.CompleteRequest{Token: h.token, System: req.System, Prompt: req.Prompt, MaxTokens: int32(req.MaxTokens)})
	if err != nil {
		return Completion{}, fromStatus("complete", err)
	}
	return Completion{Text: r.Text, Model: r.Model}, nil
}

func (h *hostClient) Embed(ctx context.Context, texts []string) (Embeddings, error) {
	if h.client == nil {
		return Embeddings{}, ErrUnavailable
	}
	r, err := h.client.Embed(ctx, &toolpb.EmbedRequest{Token: h.token, Texts: texts})
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
	r, err := h.client.Ingest(ctx, &toolpb.IngestRequest{Token: h.token, DocId: doc.DocID, Text: doc.Text, Title: doc.Title,
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
