// The benchmark's gRPC C++ peer: a unary echo on the callback API (Debian's libgrpc++), plain
// text HTTP/2 on 127.0.0.1. It prints "listening ADDR" and stops on SIGINT or SIGTERM.
//
//   grpc-echo [PORT]
#include "echo.grpc.pb.h"

#include <grpcpp/grpcpp.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <unistd.h>

namespace {

class BenchService final : public bench::Bench::CallbackService {
    grpc::ServerUnaryReactor *Echo(grpc::CallbackServerContext *ctx, const bench::EchoMsg *req,
                                   bench::EchoMsg *rsp) override
    {
        rsp->set_payload(req->payload());
        grpc::ServerUnaryReactor *r = ctx->DefaultReactor();
        r->Finish(grpc::Status::OK);
        return r;
    }
};

} // namespace

int
main(int argc, char **argv)
{
    std::string addr = std::string("127.0.0.1:") + (argc > 1 ? argv[1] : "0");
    BenchService service;
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(addr, grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (!server || port == 0) {
        std::fprintf(stderr, "grpc-echo: cannot listen on %s\n", addr.c_str());
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
    server->Shutdown();
    return 0;
}
