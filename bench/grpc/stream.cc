// The streaming benchmark's gRPC C++ peer (bench/stream.sh runs it), the counterpart of
// ../stream_cmicro.c and ../go/stream.go, on Debian's libgrpc++ (plain text HTTP/2, 127.0.0.1):
//
//   grpc-stream server [PORT]                     serves bench.Bench/Down and Chat, prints
//                                                 "listening ADDR", stops on SIGINT or SIGTERM
//   grpc-stream client ADDR down|bidi PAYLOAD N   one stream of N messages of PAYLOAD bytes,
//                                                 prints "kind=... payload=... msgs=N ms=...
//                                                 rate=..."
//
// Down (server-stream): the request's payload is "N SIZE"; the server writes N messages, each
// Write as soon as the last one was taken by the transport (HTTP/2 flow control holds it back).
// Chat (bidi): the server answers every message with it; the client writes from one thread while
// it reads on another, so that the stream is full both ways. One channel (one connection), one
// stream; the clock starts once the channel is connected. Server: the callback API (a reactor
// per stream; a sync-API server was no faster here, slower at 64 B); client: the sync API (a
// callback-API client measured the same).
#include "echo.grpc.pb.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <unistd.h>

namespace {

// Down: writes N messages of SIZE bytes, the next one when the last write is done.
class DownReactor final : public grpc::ServerWriteReactor<bench::EchoMsg> {
  public:
    explicit DownReactor(const bench::EchoMsg *req)
    {
        long long n = 0, size = 0;
        std::sscanf(req->payload().c_str(), "%lld %lld", &n, &size);
        left_ = n;
        msg_.set_payload(std::string((size_t)(size > 0 ? size : 0), '\0'));
        Next();
    }
    void OnWriteDone(bool ok) override
    {
        if (!ok) {
            Finish(grpc::Status(grpc::StatusCode::UNKNOWN, "write failed"));
            return;
        }
        Next();
    }
    void OnDone() override { delete this; }

  private:
    void Next()
    {
        if (left_-- > 0) {
            StartWrite(&msg_);
        } else {
            Finish(grpc::Status::OK);
        }
    }
    bench::EchoMsg msg_;
    long long left_ = 0;
};

// Chat: reads a message, writes it back, reads the next one.
class ChatReactor final : public grpc::ServerBidiReactor<bench::EchoMsg, bench::EchoMsg> {
  public:
    ChatReactor() { StartRead(&msg_); }
    void OnReadDone(bool ok) override
    {
        if (!ok) {
            Finish(grpc::Status::OK); // the client's WritesDone (or a broken stream)
            return;
        }
        StartWrite(&msg_);
    }
    void OnWriteDone(bool ok) override
    {
        if (!ok) {
            Finish(grpc::Status(grpc::StatusCode::UNKNOWN, "write failed"));
            return;
        }
        StartRead(&msg_);
    }
    void OnDone() override { delete this; }

  private:
    bench::EchoMsg msg_;
};

class StreamService final : public bench::Bench::CallbackService {
    grpc::ServerWriteReactor<bench::EchoMsg> *Down(grpc::CallbackServerContext *,
                                                   const bench::EchoMsg *req) override
    {
        return new DownReactor(req);
    }
    grpc::ServerBidiReactor<bench::EchoMsg, bench::EchoMsg> *
    Chat(grpc::CallbackServerContext *) override
    {
        return new ChatReactor();
    }
};

int
serve(const char *port_arg)
{
    std::string addr = std::string("127.0.0.1:") + port_arg;
    StreamService service;
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(addr, grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (!server || port == 0) {
        std::fprintf(stderr, "grpc-stream: cannot listen on %s\n", addr.c_str());
        return 1;
    }
    std::printf("listening 127.0.0.1:%d\n", port);
    std::fflush(stdout);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    int sig = 0;
    sigwait(&set, &sig);
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    return 0;
}

double
ms_since(std::chrono::steady_clock::time_point t0)
{
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

int
client(const std::string &addr, const std::string &kind, size_t size, long long n)
{
    if (addr.rfind("127.", 0) != 0 || n < 1 || (kind != "down" && kind != "bidi")) {
        std::fprintf(stderr, "grpc-stream: ADDR must be 127.x.x.x:PORT, N > 0, down or bidi\n");
        return 2;
    }
    auto channel = grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
    if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5))) {
        std::fprintf(stderr, "grpc-stream: cannot connect to %s\n", addr.c_str());
        return 1;
    }
    auto stub = bench::Bench::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(110));
    bench::EchoMsg m;
    long long got = 0;
    auto t0 = std::chrono::steady_clock::now();
    grpc::Status st;
    if (kind == "down") {
        bench::EchoMsg req;
        req.set_payload(std::to_string(n) + " " + std::to_string(size));
        auto reader = stub->Down(&ctx, req);
        while (got < n && reader->Read(&m)) {
            got += m.payload().size() == size;
        }
        double ms = ms_since(t0);
        std::printf("kind=%s payload=%zu msgs=%lld ms=%.0f rate=%.0f\n", kind.c_str(), size, got,
                    ms, (double)got * 1000.0 / ms);
        st = reader->Finish();
    } else {
        auto stream = stub->Chat(&ctx);
        std::thread writer([&stream, size, n] {
            bench::EchoMsg out;
            out.set_payload(std::string(size, '\0'));
            for (long long i = 0; i < n; i++) {
                if (!stream->Write(out)) {
                    break;
                }
            }
            stream->WritesDone();
        });
        while (got < n && stream->Read(&m)) {
            got += m.payload().size() == size;
        }
        double ms = ms_since(t0);
        writer.join();
        std::printf("kind=%s payload=%zu msgs=%lld ms=%.0f rate=%.0f\n", kind.c_str(), size, got,
                    ms, (double)got * 1000.0 / ms);
        st = stream->Finish();
    }
    if (!st.ok()) {
        std::fprintf(stderr, "grpc-stream: %s\n", st.error_message().c_str());
    }
    return got == n && st.ok() ? 0 : 1;
}

} // namespace

int
main(int argc, char **argv)
{
    if (argc >= 2 && std::strcmp(argv[1], "server") == 0) {
        return serve(argc > 2 ? argv[2] : "0");
    }
    if (argc >= 6 && std::strcmp(argv[1], "client") == 0) {
        return client(argv[2], argv[3], std::strtoul(argv[4], nullptr, 10), std::atoll(argv[5]));
    }
    std::fprintf(stderr, "usage: grpc-stream server [PORT] | client ADDR down|bidi PAYLOAD N\n");
    return 2;
}
