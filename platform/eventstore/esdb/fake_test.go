package esdb

import (
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// fakeServer is a test double of the EventStoreDB Streams gRPC service, built on the client's own
// generated service, so the real client talks to it over a loopback connection. It records every
// request and answers the few RPCs the adapter uses (Append; Read of a stream, of $all backwards, and
// $all subscriptions) with the server's message shapes. It is deliberately not EventStoreDB: it knows
// nothing of $tb/$maxAge on reads, scavenging, transactions, ACLs or clustering. Knobs let a test
// make it answer the way a server does in the cases the adapter must map.
type fakeServer struct {
	api.UnimplementedStreamsServer

	mu      sync.Mutex
	changed chan struct{} // closed and replaced after every append
	log     []fakeRecord
	last    map[string]uint64
	nextPos uint64
	appends []appendCall
	reads   []*api.ReadReq

	hidden       map[string]bool // stream reads answer "not found" although events exist ($tb/$maxAge hid all)
	deleted      map[string]bool // appends and reads answer stream-deleted
	beforeAppend func(stream string)
	noCaughtUp   bool // end catch-up with a checkpoint, as servers before 23.10 do, instead of caught-up
	ignoreFilter bool // a broken server that sends every event whatever the filter
	dropAfter    int  // end this many subscriptions with Unavailable after their catch-up
}

type fakeRecord struct {
	stream string
	rev    uint64
	pos    uint64
	id     *shared.UUID
	meta   map[string]string
	custom []byte
	data   []byte
}

// appendCall is one Append request as the fake received it.
type appendCall struct {
	Stream   string
	Expected string // "any", "no_stream", "stream_exists" or the revision
	Messages []*api.AppendReq_ProposedMessage
}

func startFake(t testing.TB) (*fakeServer, string) {
	t.Helper()
	f, addr, _ := serveFake(t, "127.0.0.1:0")
	return f, fmt.Sprintf("esdb://%s?tls=false", addr)
}

// serveFake serves a new, empty fake on addr and returns it, its address and its server (to stop it).
func serveFake(t testing.TB, addr string) (*fakeServer, string, *grpc.Server) {
	t.Helper()
	f := &fakeServer{changed: make(chan struct{}), last: map[string]uint64{}, nextPos: 1000,
		hidden: map[string]bool{}, deleted: map[string]bool{}}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	api.RegisterStreamsServer(srv, f)
	go srv.Serve(lis) //nolint:errcheck // ends with Stop
	t.Cleanup(srv.Stop)
	return f, lis.Addr().String(), srv
}

func expectedString(o *api.AppendReq_Options) string {
	switch v := o.ExpectedStreamRevision.(type) {
	case *api.AppendReq_Options_NoStream:
		return "no_stream"
	case *api.AppendReq_Options_StreamExists:
		return "stream_exists"
	case *api.AppendReq_Options_Revision:
		return strconv.FormatUint(v.Revision, 10)
	default:
		return "any"
	}
}

func (f *fakeServer) Append(srv api.Streams_AppendServer) error {
	first, err := srv.Recv()
	if err != nil {
		return err
	}
	o := first.GetOptions()
	if o == nil {
		return status.Error(codes.InvalidArgument, "first append message must be options")
	}
	stream := string(o.GetStreamIdentifier().GetStreamName())
	call := appendCall{Stream: stream, Expected: expectedString(o)}
	for {
		r, err := srv.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		call.Messages = append(call.Messages, r.GetProposedMessage())
	}
	f.mu.Lock()
	f.appends = append(f.appends, call)
	hook := f.beforeAppend
	f.mu.Unlock()
	if hook != nil {
		hook(stream)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.deleted[stream] {
		srv.SetTrailer(metadata.Pairs("exception", "stream-deleted", "stream-name", stream))
		return status.Error(codes.FailedPrecondition, "stream deleted")
	}
	last, exists := f.last[stream]
	var ok bool
	switch v := o.ExpectedStreamRevision.(type) {
	case *api.AppendReq_Options_NoStream:
		ok = !exists
	case *api.AppendReq_Options_StreamExists:
		ok = exists
	case *api.AppendReq_Options_Revision:
		ok = exists && last == v.Revision
	default:
		ok = true
	}
	if !ok {
		wev := &api.AppendResp_WrongExpectedVersion{}
		if exists {
			wev.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: last}
		} else {
			wev.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &shared.Empty{}}
		}
		switch v := o.ExpectedStreamRevision.(type) {
		case *api.AppendReq_Options_NoStream:
			wev.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedNoStream{ExpectedNoStream: &shared.Empty{}}
		case *api.AppendReq_Options_StreamExists:
			wev.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedStreamExists{ExpectedStreamExists: &shared.Empty{}}
		case *api.AppendReq_Options_Revision:
			wev.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedRevision{ExpectedRevision: v.Revision}
		}
		return srv.SendAndClose(&api.AppendResp{Result: &api.AppendResp_WrongExpectedVersion_{WrongExpectedVersion: wev}})
	}
	var pos uint64
	for _, m := range call.Messages {
		pos = f.addLocked(stream, m.GetId(), m.GetMetadata(), m.GetCustomMetadata(), m.GetData())
	}
	return srv.SendAndClose(&api.AppendResp{Result: &api.AppendResp_Success_{Success: &api.AppendResp_Success{
		CurrentRevisionOption: &api.AppendResp_Success_CurrentRevision{CurrentRevision: f.last[stream]},
		PositionOption:        &api.AppendResp_Success_Position{Position: &api.AppendResp_Position{CommitPosition: pos, PreparePosition: pos}},
	}}})
}

// addLocked records one event at the next revision of stream and a new, non-contiguous $all position.
func (f *fakeServer) addLocked(stream string, id *shared.UUID, md map[string]string, custom, data []byte) uint64 {
	rev := uint64(0)
	if last, ok := f.last[stream]; ok {
		rev = last + 1
	}
	f.last[stream] = rev
	pos := f.nextPos
	f.nextPos += 137
	meta := map[string]string{}
	for k, v := range md {
		meta[k] = v
	}
	meta["created"] = strconv.FormatInt(time.Now().UnixNano()/100, 10)
	f.log = append(f.log, fakeRecord{stream: stream, rev: rev, pos: pos, id: id, meta: meta, custom: custom, data: data})
	close(f.changed)
	f.changed = make(chan struct{})
	return pos
}

// addRaw records an event written by someone else (a system event, a foreign writer).
func (f *fakeServer) addRaw(stream, typ string, custom, data []byte) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := &shared.UUID{Value: &shared.UUID_String_{String_: "0b0f0000-0000-4000-8000-000000000001"}}
	return f.addLocked(stream, id, map[string]string{"type": typ, "content-type": "application/json"}, custom, data)
}

func (r fakeRecord) resp() *api.ReadResp {
	return &api.ReadResp{Content: &api.ReadResp_Event{Event: &api.ReadResp_ReadEvent{
		Event: &api.ReadResp_ReadEvent_RecordedEvent{
			Id: r.id, StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(r.stream)},
			StreamRevision: r.rev, PreparePosition: r.pos, CommitPosition: r.pos,
			Metadata: r.meta, CustomMetadata: r.custom, Data: r.data,
		},
		Position: &api.ReadResp_ReadEvent_CommitPosition{CommitPosition: r.pos},
	}}}
}

func (f *fakeServer) Read(req *api.ReadReq, srv api.Streams_ReadServer) error {
	f.mu.Lock()
	f.reads = append(f.reads, req)
	f.mu.Unlock()
	o := req.GetOptions()
	if o.GetSubscription() != nil {
		if o.GetAll() == nil {
			return status.Error(codes.Unimplemented, "the fake subscribes to $all only")
		}
		return f.subscribe(o, srv)
	}
	if s := o.GetStream(); s != nil {
		return f.readStream(o, s, srv)
	}
	return f.readAllBackwards(o, srv)
}

func (f *fakeServer) readStream(o *api.ReadReq_Options, so *api.ReadReq_Options_StreamOptions, srv api.Streams_ReadServer) error {
	name := string(so.GetStreamIdentifier().GetStreamName())
	f.mu.Lock()
	if f.deleted[name] {
		f.mu.Unlock()
		srv.SetTrailer(metadata.Pairs("exception", "stream-deleted", "stream-name", name))
		return status.Error(codes.FailedPrecondition, "stream deleted")
	}
	var recs []fakeRecord
	for _, r := range f.log {
		if r.stream == name {
			recs = append(recs, r)
		}
	}
	hidden := f.hidden[name]
	f.mu.Unlock()
	if len(recs) == 0 || hidden {
		return srv.Send(&api.ReadResp{Content: &api.ReadResp_StreamNotFound_{StreamNotFound: &api.ReadResp_StreamNotFound{
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)}}}})
	}
	back := o.GetReadDirection() == api.ReadReq_Options_Backwards
	if back {
		sort.Slice(recs, func(i, j int) bool { return recs[i].rev > recs[j].rev })
	}
	n := uint64(0)
	for _, r := range recs {
		if rev, ok := so.GetRevisionOption().(*api.ReadReq_Options_StreamOptions_Revision); ok {
			if (!back && r.rev < rev.Revision) || (back && r.rev > rev.Revision) {
				continue
			}
		}
		if n >= o.GetCount() {
			break
		}
		n++
		if err := srv.Send(r.resp()); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeServer) readAllBackwards(o *api.ReadReq_Options, srv api.Streams_ReadServer) error {
	if o.GetReadDirection() != api.ReadReq_Options_Backwards {
		return status.Error(codes.Unimplemented, "the fake reads $all backwards only")
	}
	before := ^uint64(0)
	if p := o.GetAll().GetPosition(); p != nil {
		before = p.GetCommitPosition()
	}
	f.mu.Lock()
	recs := append([]fakeRecord(nil), f.log...)
	f.mu.Unlock()
	n := uint64(0)
	for i := len(recs) - 1; i >= 0 && n < o.GetCount(); i-- {
		if recs[i].pos >= before {
			continue
		}
		n++
		if err := srv.Send(recs[i].resp()); err != nil {
			return err
		}
	}
	return nil
}

// subscribe delivers the events after the start position that match the prefix filter, then
// caught-up (or a checkpoint), then live events until the client goes away.
func (f *fakeServer) subscribe(o *api.ReadReq_Options, srv api.Streams_ReadServer) error {
	after, fromStart := uint64(0), true
	switch v := o.GetAll().GetAllOption().(type) {
	case *api.ReadReq_Options_AllOptions_Position:
		after, fromStart = v.Position.GetCommitPosition(), false
	case *api.ReadReq_Options_AllOptions_End:
		return status.Error(codes.Unimplemented, "the fake does not subscribe from the end")
	}
	prefixes := o.GetFilter().GetStreamIdentifier().GetPrefix()
	match := func(r fakeRecord) bool {
		if !fromStart && r.pos <= after {
			return false
		}
		if len(prefixes) == 0 || f.ignoreFilter {
			return true
		}
		for _, p := range prefixes {
			if strings.HasPrefix(r.stream, p) {
				return true
			}
		}
		return false
	}
	if err := srv.Send(&api.ReadResp{Content: &api.ReadResp_Confirmation{Confirmation: &api.ReadResp_SubscriptionConfirmation{SubscriptionId: "fake"}}}); err != nil {
		return err
	}
	next, caughtUp := 0, false
	for {
		f.mu.Lock()
		recs := f.log[next:]
		next = len(f.log)
		wait := f.changed
		noCaughtUp := f.noCaughtUp
		f.mu.Unlock()
		for _, r := range recs {
			if match(r) {
				if err := srv.Send(r.resp()); err != nil {
					return err
				}
			}
		}
		if !caughtUp {
			caughtUp = true
			msg := &api.ReadResp{Content: &api.ReadResp_CaughtUp_{CaughtUp: &api.ReadResp_CaughtUp{}}}
			if noCaughtUp {
				var last uint64
				if len(recs) > 0 {
					last = recs[len(recs)-1].pos
				}
				msg = &api.ReadResp{Content: &api.ReadResp_Checkpoint_{Checkpoint: &api.ReadResp_Checkpoint{CommitPosition: last, PreparePosition: last}}}
			}
			if err := srv.Send(msg); err != nil {
				return err
			}
			f.mu.Lock()
			drop := f.dropAfter > 0
			if drop {
				f.dropAfter--
			}
			f.mu.Unlock()
			if drop {
				return status.Error(codes.Unavailable, "node going down")
			}
		}
		select {
		case <-srv.Context().Done():
			return srv.Context().Err()
		case <-wait:
		}
	}
}

func (f *fakeServer) appendCalls() []appendCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]appendCall(nil), f.appends...)
}

func (f *fakeServer) readRequests() []*api.ReadReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*api.ReadReq(nil), f.reads...)
}

// subscriptions returns the subscription requests received.
func (f *fakeServer) subscriptions() []*api.ReadReq_Options {
	var out []*api.ReadReq_Options
	for _, r := range f.readRequests() {
		if r.GetOptions().GetSubscription() != nil {
			out = append(out, r.GetOptions())
		}
	}
	return out
}

func (f *fakeServer) set(fn func(f *fakeServer)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeServer) lastPos() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.log[len(f.log)-1].pos
}
