#include <cstdio>
#include <cstdlib>
#include <fstream>

#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Shape;
using Catch::Matchers::Contains;
namespace io = xgrad::io;

namespace {

std::string temp_path(const std::string& name) { return "/tmp/xgrad_test_" + name; }

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

void spit(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

bool have_numpy() { return std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0; }

}  // namespace

TEST_CASE("npz: arrays of every supported dtype and rank round-trip", "[io]") {
    const auto path = temp_path("round.npz");
    xt::xarray<float> m = {{1.5f, -2}, {3, 4}};
    xt::xarray<double> scalar(2.25);
    io::write_npz(path, {{"m", io::to_npy(m)}, {"s", io::to_npy(scalar)}, {"b", io::bytes_to_npy("hello")},
                         {"v", io::to_npy(xt::xarray<float>{7})}});
    const auto back = io::read_npz(path);
    REQUIRE(back.size() == 4);
    CHECK(back[0].first == "m");
    CHECK(xgrad_test::array_diff(io::npy_to_float(back[0].second, "m"), m) == "");
    CHECK(back[1].second.shape == Shape{});
    const double s = io::npy_to_double(back[1].second, "s")();
    CHECK(s == 2.25);
    CHECK(io::npy_to_bytes(back[2].second, "b") == "hello");
    CHECK(back[3].second.shape == Shape{1});
    REQUIRE_THROWS_WITH(io::npy_to_bytes(back[0].second, "m"), Contains("m has dtype <f4"));
}

TEST_CASE("npz: truncated, corrupt and foreign files are IoErrors naming the file", "[io][errors]") {
    const auto path = temp_path("good.npz");
    io::write_npz(path, {{"w", io::to_npy(xt::xarray<float>(xt::ones<float>({8, 8})))}});
    const std::string good = slurp(path);
    const auto bad = temp_path("bad.npz");
    spit(bad, good.substr(0, good.size() / 2));
    REQUIRE_THROWS_WITH(io::read_npz(bad), Contains(bad));
    std::string flipped = good;
    flipped[good.size() / 2] ^= 0x55;  // inside the array data
    spit(bad, flipped);
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION  // the fuzzing build skips CRCs on purpose
    REQUIRE_THROWS_WITH(io::read_npz(bad), Contains("CRC mismatch"));
#endif
    spit(bad, "this is not a zip archive at all, just text that goes on for a while");
    REQUIRE_THROWS_WITH(io::read_npz(bad), Contains("not a zip archive"));
    spit(bad, "");
    REQUIRE_THROWS_AS(io::read_npz(bad), xgrad::IoError);
    REQUIRE_THROWS_WITH(io::read_npz(temp_path("does_not_exist.npz")), Contains("cannot open"));
}

TEST_CASE("npz: a failed save keeps the previous file", "[io][errors]") {
    const auto path = temp_path("keep.npz");
    io::write_npz(path, {{"a", io::to_npy(xt::xarray<float>{1, 2})}});
    const std::string before = slurp(path);
    io::NpyArray broken{Shape{3}, "<f4", {0, 0, 0, 0}};  // 4 bytes for 3 floats
    REQUIRE_THROWS_AS(io::write_npz(path, {{"a", broken}}), xgrad::IoError);
    CHECK(slurp(path) == before);
    REQUIRE_THROWS_AS(io::write_npz("/nonexistent_dir/x.npz", {}), xgrad::IoError);
}

TEST_CASE("npz: numpy.load opens our files and we open numpy's (stored and deflated)", "[io]") {
    if (!have_numpy()) {
        WARN("python3-numpy is not installed: numpy compatibility not checked");
        return;
    }
    const auto ours = temp_path("ours.npz");
    io::write_npz(ours, {{"conv1.weight", io::to_npy(xt::xarray<float>{{1, 2, 3}, {4, 5, 6}})},
                         {"steps", io::to_npy(xt::xarray<double>(3.0))}});
    const std::string check = "/usr/bin/python3 -c \"import numpy as np; d = np.load('" + ours +
                              "'); w = d['conv1.weight']; assert w.dtype == np.float32 and w.shape == (2, 3) and "
                              "w[1, 2] == 6; assert d['steps'].shape == () and d['steps'] == 3\"";
    CHECK(std::system(check.c_str()) == 0);
    const auto theirs = temp_path("theirs.npz");
    const std::string make = "/usr/bin/python3 -c \"import numpy as np; np.savez_compressed('" + theirs +
                             "', a=np.arange(6, dtype=np.float32).reshape(2, 3), b=np.array([0.5, 1.5]))\"";
    REQUIRE(std::system(make.c_str()) == 0);
    const auto back = io::read_npz(theirs);
    REQUIRE(back.size() == 2);
    CHECK(xgrad_test::array_diff(io::npy_to_float(back[0].second, "a"), xt::xarray<float>{{0, 1, 2}, {3, 4, 5}}) == "");
    CHECK(xgrad_test::array_diff(io::npy_to_double(back[1].second, "b"), xt::xarray<double>{0.5, 1.5}) == "");
}
