#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <cmath>
#include <set>

#include <xtensor/xview.hpp>

#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Shape;
using xgrad::Tensor;
using xgrad_test::array_diff;
using Catch::Matchers::Contains;
namespace data = xgrad::data;

namespace {

using xgrad_test::temp_path;

// An IDX file of unsigned bytes: magic, dims (big-endian), data.
std::string idx_bytes(const std::vector<std::uint32_t>& dims, const std::vector<std::uint8_t>& values) {
    std::string s{'\0', '\0', '\x08', static_cast<char>(dims.size())};
    for (auto d : dims)
        for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>((d >> shift) & 0xff));
    s.append(values.begin(), values.end());
    return s;
}

void write(const std::string& path, const std::string& bytes, bool gz = false) {
    if (gz) {
        gzFile f = gzopen(path.c_str(), "wb");
        gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
        gzclose(f);
    } else {
        std::ofstream(path, std::ios::binary) << bytes;
    }
}

}  // namespace

TEST_CASE("read_idx: raw and gzip files give the same shape and bytes", "[data]") {
    const auto bytes = idx_bytes({2, 3}, {1, 2, 3, 4, 5, 255});
    for (bool gz : {false, true}) {
        const auto path = temp_path(gz ? "a.idx.gz" : "a.idx");
        write(path, bytes, gz);
        const auto a = data::read_idx(path);
        CHECK(a.shape == Shape{2, 3});
        CHECK(a.values == std::vector<std::uint8_t>{1, 2, 3, 4, 5, 255});
    }
}

TEST_CASE("read_idx: missing, truncated, padded and foreign files are IoErrors naming the file", "[data][errors]") {
    REQUIRE_THROWS_WITH(data::read_idx(temp_path("nothing_here")), Contains("xgrad_test_nothing_here"));
    const auto path = temp_path("bad.idx");
    write(path, idx_bytes({2, 3}, {1, 2, 3, 4, 5}));
    REQUIRE_THROWS_WITH(data::read_idx(path), Contains("truncated") && Contains(path));
    write(path, idx_bytes({2, 3}, {1, 2, 3, 4, 5, 6, 7}));
    REQUIRE_THROWS_WITH(data::read_idx(path), Contains("longer than its header"));
    write(path, "PK\x03\x04 definitely not idx");
    REQUIRE_THROWS_WITH(data::read_idx(path), Contains("not an IDX file"));
    write(path, std::string{'\0', '\0', '\x0d', '\x01', '\0', '\0', '\0', '\x01', 'a', 'b', 'c', 'd'});
    REQUIRE_THROWS_WITH(data::read_idx(path), Contains("type 0x0d"));
    write(path, idx_bytes({2, 3}, {1, 2, 3, 4, 5, 6}).substr(0, 6));
    REQUIRE_THROWS_AS(data::read_idx(path), xgrad::IoError);
    // a gzip stream cut in half
    const auto gz = temp_path("cut.idx.gz");
    write(gz, idx_bytes({100}, std::vector<std::uint8_t>(100, 7)), true);
    std::string whole;
    {
        std::ifstream f(gz, std::ios::binary);
        whole.assign(std::istreambuf_iterator<char>(f), {});
    }
    write(gz, whole.substr(0, whole.size() / 2));
    REQUIRE_THROWS_AS(data::read_idx(gz), xgrad::IoError);
}

TEST_CASE("load_mnist_format: scales pixels to [0, 1] and checks that counts agree", "[data][errors]") {
    const std::string dir = temp_path("mnist");
    std::system(("mkdir -p " + dir).c_str());
    write(dir + "/t10k-images-idx3-ubyte", idx_bytes({2, 2, 2}, {0, 255, 51, 102, 0, 0, 0, 255}));
    write(dir + "/t10k-labels-idx1-ubyte.gz", idx_bytes({2}, {3, 9}), true);
    const auto d = data::load_mnist_format(dir, data::Split::test);
    CHECK(d.x.shape() == Shape{2, 2, 2, 1});
    CHECK(d.x.value()(0, 0, 1, 0) == Approx(1.0f));
    CHECK(d.x.value()(0, 1, 0, 0) == Approx(0.2f));
    CHECK(xgrad_test::array_diff(d.y.value(), xt::xarray<float>{3, 9}) == "");
    write(dir + "/t10k-labels-idx1-ubyte.gz", idx_bytes({3}, {3, 9, 1}), true);
    REQUIRE_THROWS_WITH(data::load_mnist_format(dir, data::Split::test),
                        Contains("t10k-labels-idx1-ubyte.gz has labels of shape [3]") && Contains("has 2 images"));
    REQUIRE_THROWS_WITH(data::load_mnist_format(dir, data::Split::train), Contains("train-images-idx3-ubyte"));
}

TEST_CASE("DataLoader: batches cover every sample once, reshuffled per epoch, reproducibly", "[data]") {
    xt::xarray<float> x = xt::arange<float>(10);
    x.reshape({10, 1});
    const data::Dataset d{Tensor(x), Tensor(xt::xarray<float>(xt::arange<float>(10)))};
    data::DataLoader loader(d, {.batch_size = 4, .seed = 5});
    CHECK(loader.size() == 3);
    auto epoch_order = [&](std::size_t epoch) {
        std::vector<float> seen;
        for (std::size_t i = 0; i < loader.size(); ++i) {
            const auto b = loader.batch(epoch, i);
            CHECK(b.x.shape()[0] == (i < 2 ? 4u : 2u));
            for (std::size_t k = 0; k < b.y.size(); ++k) {
                CHECK(b.x.value()(k, 0) == b.y.value()(k));  // rows stay paired with their targets
                seen.push_back(b.y.value()(k));
            }
        }
        return seen;
    };
    const auto e0 = epoch_order(0), e1 = epoch_order(1);
    CHECK(std::set<float>(e0.begin(), e0.end()).size() == 10);
    CHECK(e0 != e1);
    CHECK(epoch_order(0) == e0);
    data::DataLoader again(d, {.batch_size = 4, .seed = 5});
    CHECK(again.batch(1, 0).y.value() == loader.batch(1, 0).y.value());
    CHECK(data::DataLoader(d, {.batch_size = 4, .drop_last = true}).size() == 2);
    const auto plain = data::DataLoader(d, {.batch_size = 4, .shuffle = false}).batch(0, 1);
    CHECK(xgrad_test::array_diff(plain.y.value(), xt::xarray<float>{4, 5, 6, 7}) == "");
    REQUIRE_THROWS_AS(data::DataLoader(d, {.batch_size = 0}), xgrad::ValueError);
    REQUIRE_THROWS_AS(loader.batch(0, 3), xgrad::ValueError);
}

TEST_CASE("DataLoader: shards split every global batch into disjoint parts that make up one process's batch",
          "[data][distributed]") {
    const std::size_t n = 50;
    xt::xarray<float> y = xt::arange<float>(static_cast<float>(n));
    xt::xarray<float> x = y;
    x.reshape({n, 1});
    const data::Dataset d{Tensor(x), Tensor(y)};
    for (const std::size_t shards : {2u, 3u}) {
        INFO("shards " << shards);
        // One process reading global batches of 4 × shards samples.
        const data::DataLoader whole(d, {.batch_size = 4 * shards, .seed = 9});
        std::vector<data::DataLoader> parts;
        for (std::size_t r = 0; r < shards; ++r)
            parts.emplace_back(d, data::LoaderOptions{.batch_size = 4, .seed = 9, .shard = r, .shards = shards});
        // 50 = 6 × 8 + 2 (2 shards: a last batch of 1 each); 50 = 4 × 12 + 2 (3 shards: the
        // 2 left over cannot give each shard a sample and are left out).
        const std::size_t batches = shards == 2 ? 7 : 4;
        for (const auto& p : parts) CHECK(p.size() == batches);
        for (std::size_t i = 0; i < batches; ++i) {
            std::vector<float> joined;
            for (const auto& p : parts) {
                const auto b = p.batch(1, i);
                CHECK(b.y.size() >= 1);
                joined.insert(joined.end(), b.y.value().begin(), b.y.value().end());
            }
            const auto w = whole.batch(1, i).y.value();
            CHECK(std::vector<float>(w.begin(), w.end()) == joined);
        }
    }
    REQUIRE_THROWS_WITH(data::DataLoader(d, {.shard = 2, .shards = 2}), Contains("shard 2 of 2"));
}

namespace {

// 40 distinct 5x6x2 images (every pixel's value is unique and nonzero) with labels 0..39.
xgrad::data::Dataset numbered_images() {
    auto x = xgrad::reshape(xgrad::arange<float>(1, 40 * 5 * 6 * 2 + 1), {40, 5, 6, 2});
    return {x, xgrad::arange<float>(0, 40)};
}

// Whether `out` is `in` shifted by (dy, dx) within ±p, zero-filled, and maybe mirrored.
bool is_shifted_copy(const xt::xarray<float>& in, const xt::xarray<float>& out, int p, bool& flipped) {
    const int h = static_cast<int>(in.shape(0)), w = static_cast<int>(in.shape(1)), c = static_cast<int>(in.shape(2));
    for (int flip = 0; flip < 2; ++flip)
        for (int dy = -p; dy <= p; ++dy)
            for (int dx = -p; dx <= p; ++dx) {
                bool same = true;
                for (int y = 0; same && y < h; ++y)
                    for (int x = 0; same && x < w; ++x) {
                        const int sy = y + dy, sx = (flip ? w - 1 - x : x) + dx;
                        for (int k = 0; same && k < c; ++k) {
                            const float expect = sy < 0 || sx < 0 || sy >= h || sx >= w ? 0.0f : in(sy, sx, k);
                            same = out(y, x, k) == expect;
                        }
                    }
                if (same) {
                    flipped = flip;
                    return true;
                }
            }
    return false;
}

xt::xarray<float> all_samples(const xgrad::data::DataLoader& loader, std::size_t epoch) {
    std::vector<xgrad::Tensor> parts;
    for (std::size_t i = 0; i < loader.size(); ++i) parts.push_back(loader.batch(epoch, i).x);
    return xgrad::concat(parts, 0).value();
}

}  // namespace

TEST_CASE("DataLoader augmentation: random crops and flips, the same per (seed, epoch, sample) whatever the batching",
          "[data][augment]") {
    const auto data = numbered_images();
    const xgrad::data::Augment aug{.crop_padding = 2, .horizontal_flip = true};
    const xgrad::data::DataLoader a(data, {.batch_size = 4, .shuffle = false, .seed = 3, .augment = aug});
    const xgrad::data::DataLoader b(data, {.batch_size = 7, .shuffle = false, .seed = 3, .augment = aug});
    const auto xa = all_samples(a, 1);
    CHECK(array_diff(xa, all_samples(b, 1)) == "");
    CHECK(array_diff(xa, all_samples(a, 1)) == "");  // a second read of the epoch
    CHECK(array_diff(xa, all_samples(a, 2)) != "");  // another epoch, other draws
    // the shuffled loader gives each sample its own augmentation, found by its label
    const xgrad::data::DataLoader shuffled(data, {.batch_size = 8, .seed = 3, .augment = aug});
    const auto batch = shuffled.batch(1, 2);
    for (std::size_t j = 0; j < batch.y.size(); ++j) {
        const auto k = static_cast<std::size_t>(batch.y.value()(j));
        CHECK(array_diff(xt::xarray<float>(xt::view(batch.x.value(), j)), xt::xarray<float>(xt::view(xa, k))) == "");
    }
    // every sample is the original shifted by at most 2 and maybe mirrored; both kinds occur
    int flips = 0, moved = 0;
    for (std::size_t k = 0; k < 40; ++k) {
        bool flipped = false;
        const xt::xarray<float> in = xt::view(data.x.value(), k), out = xt::view(xa, k);
        REQUIRE(is_shifted_copy(in, out, 2, flipped));
        flips += flipped;
        moved += array_diff(in, out) != "";
    }
    CHECK(flips > 8);
    CHECK(flips < 32);
    CHECK(moved > 30);
    // off by default: the samples as stored
    const xgrad::data::DataLoader plain(data, {.batch_size = 40, .shuffle = false});
    CHECK(array_diff(plain.batch(0, 0).x.value(), data.x.value()) == "");
    REQUIRE_THROWS_WITH(xgrad::data::DataLoader(xgrad::data::Dataset{xgrad::zeros({4, 3}), xgrad::zeros({4})},
                                                {.augment = {.horizontal_flip = true}}),
                        Contains("augmentation needs images x [N, H, W, C]; x [4, 3]"));
}

TEST_CASE("normalize: per channel (x - mean) / std, typed errors", "[data][augment]") {
    const auto data = numbered_images();
    const auto n = xgrad::data::normalize(data, {1.0, 2.0}, {2.0, 4.0});
    CHECK(n.x.value()(0, 0, 0, 0) == 0.0f);      // (1 - 1) / 2
    CHECK(n.x.value()(0, 0, 0, 1) == 0.0f);      // (2 - 2) / 4
    CHECK(n.x.value()(0, 0, 1, 1) == 0.5f);      // (4 - 2) / 4
    CHECK(array_diff(n.y.value(), data.y.value()) == "");
    REQUIRE_THROWS_AS(xgrad::data::normalize(data, {0.5}, {1.0}), xgrad::ValueError);
    REQUIRE_THROWS_AS(xgrad::data::normalize(data, {0.5, 0.5}, {1.0, 0.0}), xgrad::ValueError);
}

TEST_CASE("Sequential::fit augments the training batches only", "[data][augment][nn]") {
    xgrad::manual_seed(1);
    auto data = numbered_images();
    data.y = xgrad::Tensor(xt::xarray<float>(xt::fmod(data.y.value(), 2.0f)));
    const auto scaled = xgrad::data::normalize(data, {1200.0, 1200.0}, {700.0, 700.0});
    xgrad::nn::Sequential model({5, 6, 2});
    model.add(xgrad::nn::Flatten()).add(xgrad::nn::Dense(60, 2));
    model.compile(std::make_shared<xgrad::optim::SGD>(model.parameters(), xgrad::optim::SGDOptions{.lr = 0.01}),
                  xgrad::nn::Loss::cross_entropy);
    const auto h = model.fit(scaled, {.epochs = 2, .batch_size = 8, .validation_data = &scaled,
                                      .progress = xgrad::Progress::Mode::quiet,
                                      .augment = {.crop_padding = 1, .horizontal_flip = true}});
    REQUIRE(h.epochs.size() == 2);
    CHECK(std::isfinite(h.epochs[1].loss));
    CHECK(h.epochs[1].val_loss.has_value());
}
