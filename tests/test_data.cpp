#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <set>

#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Shape;
using xgrad::Tensor;
using Catch::Matchers::Contains;
namespace data = xgrad::data;

namespace {

std::string temp_path(const std::string& name) { return "/tmp/xgrad_test_" + name; }

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
