// The gRPC C++ peer's own load client (the HTTP/1.1 load generator cannot speak HTTP/2):
// closed loop, N unary calls in flight on one channel (HTTP/2 multiplexes them on one
// connection), one completion-queue thread. Bounded like loadgen: a warm-up, then a window of
// --duration seconds or --max-requests answers. It prints the same key=value line as loadgen.
//
//   grpc-load --addr 127.0.0.1:PORT [--conns N] [--payload B] [--warmup S] [--duration S]
//             [--max-requests N] [--server-pid PID] [--label NAME]
#include "echo.grpc.pb.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

uint64_t
now_ns()
{
    return (uint64_t)std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

double
proc_cpu_s(int pid)
{
    if (pid <= 0) {
        return -1;
    }
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    size_t p = s.rfind(')');
    if (p == std::string::npos) {
        return -1;
    }
    std::istringstream in(s.substr(p + 2));
    std::string tok;
    unsigned long long ut = 0, st = 0;
    for (int field = 3; in >> tok; field++) {
        if (field == 14) {
            ut = std::strtoull(tok.c_str(), nullptr, 10);
        } else if (field == 15) {
            st = std::strtoull(tok.c_str(), nullptr, 10);
            break;
        }
    }
    return (double)(ut + st) / 100.0;
}

struct Call {
    grpc::ClientContext ctx;
    bench::EchoMsg rsp;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<bench::EchoMsg>> reader;
    uint64_t t0 = 0;
};

} // namespace

int
main(int argc, char **argv)
{
    std::string addr;
    int conns = 64, server_pid = 0;
    size_t payload = 64;
    double warmup = 1, duration = 3;
    uint64_t max_requests = 10000000;
    std::string label = "-";
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        const char *v = argv[i + 1];
        if (a == "--addr") {
            addr = v;
        } else if (a == "--conns") {
            conns = std::atoi(v);
        } else if (a == "--payload") {
            payload = std::strtoul(v, nullptr, 10);
        } else if (a == "--warmup") {
            warmup = std::atof(v);
        } else if (a == "--duration") {
            duration = std::atof(v);
        } else if (a == "--max-requests") {
            max_requests = std::strtoull(v, nullptr, 10);
        } else if (a == "--server-pid") {
            server_pid = std::atoi(v);
        } else if (a == "--label") {
            label = v;
        }
    }
    if (addr.rfind("127.", 0) != 0 || conns < 1 || duration <= 0 || duration > 600 ||
        warmup < 0 || warmup > 600) {
        std::fprintf(stderr, "grpc-load: --addr 127.x.x.x:PORT required; bounds exceeded\n");
        return 2;
    }
    auto channel = grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
    auto stub = bench::Bench::NewStub(channel);
    bench::EchoMsg req;
    std::string data(payload, 'a');
    for (size_t i = 0; i < payload; i++) {
        data[i] = (char)('a' + i % 26);
    }
    req.set_payload(data);
    grpc::CompletionQueue cq;

    auto start = [&](Call *c) {
        c->~Call();
        new (c) Call();
        c->t0 = now_ns();
        c->reader = stub->AsyncEcho(&c->ctx, req, &cq);
        c->reader->Finish(&c->rsp, &c->status, c);
    };
    std::vector<Call> calls(conns);
    uint64_t t_begin = now_ns();
    uint64_t t_measure = t_begin + (uint64_t)(warmup * 1e9);
    uint64_t t_end = t_measure + (uint64_t)(duration * 1e9);
    std::vector<uint32_t> lat;
    lat.reserve(std::min<uint64_t>(max_requests, (uint64_t)(2e6 * duration) + 1000));
    double cpu0 = -1;
    bool measuring = false, stopping = false;
    uint64_t errors = 0, bad = 0, t_stop = 0;
    int outstanding = conns;
    for (auto &c : calls) {
        start(&c);
    }
    void *tag;
    bool ok;
    while (outstanding > 0 && cq.Next(&tag, &ok)) {
        Call *c = static_cast<Call *>(tag);
        uint64_t now = now_ns();
        outstanding--;
        if (!ok || !c->status.ok()) {
            errors++;
        } else if (c->rsp.payload().size() != payload) {
            bad++;
        }
        if (!measuring && !stopping && now >= t_measure) {
            measuring = true;
            t_measure = now;
            cpu0 = proc_cpu_s(server_pid);
        }
        if (measuring && c->t0 >= t_measure) {
            uint64_t d = now - c->t0;
            lat.push_back(d > UINT32_MAX ? UINT32_MAX : (uint32_t)d);
            if (lat.size() >= max_requests || now >= t_end) {
                measuring = false;
                stopping = true;
                t_stop = now;
            }
        } else if (measuring && now >= t_end) {
            measuring = false;
            stopping = true;
            t_stop = now;
        }
        if (!stopping) {
            start(c);
            outstanding++;
        }
    }
    double cpu1 = proc_cpu_s(server_pid);
    double window = (double)(t_stop - t_measure) / 1e9;
    std::sort(lat.begin(), lat.end());
    auto pct = [&](double p) {
        if (lat.empty()) {
            return 0.0;
        }
        size_t i = std::min(lat.size() - 1, (size_t)(p * (double)lat.size()));
        return lat[i] / 1000.0;
    };
    double cpu = cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1;
    double per100k = cpu >= 0 && !lat.empty() ? cpu * 100000.0 / (double)lat.size() : -1;
    std::printf("label=%s conns=%d payload=%zu rate=0 calls=%zu window_s=%.3f rps=%.0f "
                "p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f errors=%" PRIu64
                " bad=%" PRIu64 " cpu_s=%.2f cpu_per_100k=%.3f queued_max=0\n",
                label.c_str(), conns, payload, lat.size(), window,
                window > 0 ? (double)lat.size() / window : 0, pct(0.5), pct(0.9), pct(0.99),
                pct(0.999), lat.empty() ? 0 : lat.back() / 1000.0, errors, bad, cpu, per100k);
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    return errors || bad || lat.empty();
}
