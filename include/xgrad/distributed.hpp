#pragma once

// Data-parallel training over MPI (Open MPI): every process (rank) holds the whole model,
// reads its own shard of every batch, and the ranks average their gradients before each
// optimizer step, so N ranks train like one process with N times the batch.
//
// ```
// xgrad::distributed::Session mpi(argc, argv);           // MPI_Init ... MPI_Finalize
// Net model;
// xgrad::distributed::broadcast(model);                  // rank 0's initial weights everywhere
// xgrad::optim::SGD opt(model.parameters(), {.lr = 0.01, .momentum = 0.9});
// xgrad::distributed::GradientAverager averager(model.parameters());
// xgrad::data::DataLoader loader(train, {.batch_size = 32, .seed = 1,
//                                        .shard = mpi.rank(), .shards = mpi.world_size()});
// for (std::size_t i = 0; i < loader.size(); ++i) {
//     auto b = loader.batch(epoch, i);
//     auto loss = xgrad::cross_entropy(model(b.x), b.y);
//     opt.zero_grad();
//     loss.backward();
//     averager.average();                                // one MPI_Allreduce per bucket
//     opt.step();
// }
// ```
//
// Run with `mpirun -np 2 ./train` (one machine) or `mpirun --hostfile hosts -np 8 ./train`.
// Without MPI (xgrad built with -Ddistributed=disabled, or Open MPI not found), available()
// is false and Session throws; rank() is 0 and world_size() 1.

#include <cstddef>
#include <string>
#include <vector>

#include "xgrad/error.hpp"
#include "xgrad/nn/module.hpp"
#include "xgrad/tensor.hpp"

namespace xgrad::distributed {

/// A collective that failed or got no answer within the timeout: a rank died, hangs or
/// diverged (called a different collective). The message names the operation, this rank and
/// the timeout. The run cannot continue; abort() ends every rank.
class DistributedError : public Error {
public:
    using Error::Error;
};

/// True when xgrad was built with MPI.
bool available();

/// Initialises MPI once per process (threads: funneled) and reads the collective timeout
/// from XGRAD_DISTRIBUTED_TIMEOUT (seconds, default 300). Throws ValueError when xgrad was
/// built without MPI. Started without mpirun, the process is a world of one.
void init(int& argc, char**& argv);
/// True between init() and finalize().
bool initialized();
/// Ends MPI (after a barrier-free MPI_Finalize); no-op when not initialized.
void finalize();
/// Ends every rank of the job with `code` (MPI_Abort); std::exit(code) without MPI.
[[noreturn]] void abort(int code);

/// This process's rank (0 when MPI is not initialized).
int rank();
/// Number of ranks (1 when MPI is not initialized).
int world_size();
/// Ranks on this machine (1 when MPI is not initialized): to split the cores among them.
int local_size();
/// True on rank 0, the rank that prints and writes files.
inline bool is_main() { return rank() == 0; }

/// Seconds a collective may wait for the other ranks before it throws DistributedError.
void set_timeout(double seconds);
double timeout();

/// MPI_Init on construction and MPI_Finalize on destruction (RAII for init/finalize).
class Session {
public:
    Session(int& argc, char**& argv) { init(argc, argv); }
    ~Session() { finalize(); }
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
    std::size_t rank() const { return static_cast<std::size_t>(distributed::rank()); }
    std::size_t world_size() const { return static_cast<std::size_t>(distributed::world_size()); }
};

/// Waits until every rank has arrived. Throws DistributedError on failure or timeout.
void barrier();
/// Copies every parameter and buffer of `model` from rank `root` to all ranks, so that they
/// start from the same weights. Every rank must call it with the same model structure.
/// Throws DistributedError.
void broadcast(const nn::Module& model, int root = 0);
/// Element-wise sums over all ranks, in place (metrics: loss sums, counts).
/// Throws DistributedError.
void allreduce_sum(std::vector<double>& values);

struct AveragerOptions {
    /// Gradients are packed into buckets of up to this many bytes, one MPI_Allreduce each
    /// (a larger parameter gets a bucket of its own).
    std::size_t bucket_bytes = std::size_t{4} << 20;
};

/// Averages the gradients of `params` over all ranks; call it after backward() and before
/// the optimizer's step(). Parameters are packed, in order, into buckets; each bucket is one
/// MPI_Allreduce (sum) followed by a division by world_size(). A parameter without a
/// gradient on this rank contributes zeros. With one rank it does nothing.
class GradientAverager {
public:
    /// Throws ValueError for an empty parameter list or bucket_bytes 0.
    explicit GradientAverager(std::vector<Tensor> params, AveragerOptions options = {});
    /// Throws DistributedError when a rank fails or does not answer within timeout().
    void average();
    /// Number of buckets (allreduce calls per average()).
    std::size_t buckets() const { return buckets_.size(); }
    /// Seconds spent in average() so far, and the number of calls.
    double seconds() const { return seconds_; }
    std::size_t calls() const { return calls_; }

private:
    struct Bucket {
        std::size_t first, last;  // parameters [first, last)
        std::vector<float> data;
    };
    std::vector<Tensor> params_;
    std::vector<Bucket> buckets_;
    double seconds_ = 0;
    std::size_t calls_ = 0;
};

}  // namespace xgrad::distributed
