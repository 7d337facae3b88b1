#include <zlib.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
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

namespace {

// The samples of an in-memory dataset served one at a time, counting the reads.
class RowSource : public data::Source {
public:
    explicit RowSource(const data::Dataset& d) : rows_(xgrad_test::as_source(d)) {}
    std::size_t size() const override { return rows_->size(); }
    data::Sample get(std::size_t i) const override {
        ++reads;
        return rows_->get(i);
    }
    mutable std::atomic<int> reads{0};

private:
    std::shared_ptr<data::Source> rows_;
};

std::vector<data::Batch> epoch_batches(const data::DataLoader& loader, std::size_t epoch) {
    std::vector<data::Batch> out;
    for (std::size_t i = 0; i < loader.size(); ++i) out.push_back(loader.batch(epoch, i));
    return out;
}

void check_same_batches(const std::vector<data::Batch>& a, const std::vector<data::Batch>& b) {
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        INFO("batch " << i);
        CHECK(array_diff(a[i].x.value(), b[i].x.value(), 0, 0) == "");
        CHECK(array_diff(a[i].y.value(), b[i].y.value(), 0, 0) == "");
    }
}

}  // namespace

TEST_CASE("DataLoader over a Source: the same batches as the in-memory dataset, for every option", "[data]") {
    const auto images = numbered_images();
    const auto source = std::make_shared<RowSource>(images);
    const data::Augment aug{.crop_padding = 1, .horizontal_flip = true};
    const std::vector<data::LoaderOptions> cases{
        {.batch_size = 7, .seed = 4},
        {.batch_size = 7, .shuffle = false},
        {.batch_size = 6, .seed = 2, .drop_last = true},
        {.batch_size = 5, .seed = 8, .shard = 1, .shards = 3},
        {.batch_size = 8, .seed = 3, .augment = aug},
        {.batch_size = 9, .seed = 1, .augment = aug, .prefetch = true},
    };
    for (std::size_t c = 0; c < cases.size(); ++c) {
        INFO("options " << c);
        const data::DataLoader memory(images, cases[c]), streamed(source, cases[c]);
        REQUIRE(streamed.size() == memory.size());
        for (std::size_t epoch : {0u, 3u}) check_same_batches(epoch_batches(streamed, epoch), epoch_batches(memory, epoch));
    }
    // a Source of vectors with one-hot targets: x [n, F], y [n, K]
    auto vectors = data::make_source(10, [](std::size_t i) {
        xt::xarray<float> y = xt::zeros<float>({3});
        y(i % 3) = 1;
        return data::Sample{xt::xarray<float>{float(i), float(2 * i)}, y};
    });
    const auto b = data::DataLoader(vectors, {.batch_size = 4, .shuffle = false}).batch(0, 2);
    CHECK(array_diff(b.x.value(), xgrad_test::array({2, 2}, {8, 16, 9, 18})) == "");
    CHECK(array_diff(b.y.value(), xgrad_test::array({2, 3}, {0, 0, 1, 1, 0, 0})) == "");
}

TEST_CASE("DataLoader prefetch: the next batch is read ahead, results and errors are unchanged", "[data]") {
    const auto images = numbered_images();
    const auto source = std::make_shared<RowSource>(images);
    const data::DataLoader plain(images, {.batch_size = 8, .seed = 6});
    const data::DataLoader ahead(source, {.batch_size = 8, .seed = 6, .prefetch = true});
    // in order (each call finds the batch ready), across the epoch boundary
    check_same_batches(epoch_batches(ahead, 1), epoch_batches(plain, 1));
    // the worker holds epoch 2's batch 0; epoch 4's batch 0 is another one
    CHECK(array_diff(ahead.batch(4, 0).y.value(), plain.batch(4, 0).y.value(), 0, 0) == "");
    check_same_batches(epoch_batches(ahead, 2), epoch_batches(plain, 2));
    // out of order: a batch nobody asked for is dropped, the one asked for is computed
    CHECK(array_diff(ahead.batch(5, 3).y.value(), plain.batch(5, 3).y.value()) == "");
    CHECK(array_diff(ahead.batch(2, 1).y.value(), plain.batch(2, 1).y.value()) == "");
    // read ahead for real: after batch 0 the worker reads batch 1's 8 samples
    const auto src = std::make_shared<RowSource>(images);
    {
        const data::DataLoader counted(src, {.batch_size = 8, .prefetch = true});
        counted.batch(0, 0);
        const data::DataLoader copy = counted;  // copies share the source, not the pending batch
        CHECK(copy.size() == counted.size());
    }  // the destructor waits for the worker
    CHECK(src->reads == 16);
    {  // batch 1 comes from the worker, which then reads batch 2: nothing is read twice
        const data::DataLoader counted(src, {.batch_size = 8, .prefetch = true});
        counted.batch(0, 0);
        counted.batch(0, 1);
    }
    CHECK(src->reads == 16 + 24);
    // a sample whose shape differs from the first's: ShapeError naming both, also when the
    // worker met it first
    auto ragged = data::make_source(6, [](std::size_t i) {
        const std::vector<std::size_t> shape{i == 4 ? 3u : 2u};
        return data::Sample{xt::zeros<float>(shape), xt::xarray<float>(0.0f)};
    });
    const data::DataLoader bad(ragged, {.batch_size = 3, .shuffle = false, .prefetch = true});
    CHECK(bad.batch(0, 0).x.shape() == Shape{3, 2});
    REQUIRE_THROWS_AS(bad.batch(0, 1), xgrad::ShapeError);
    REQUIRE_THROWS_WITH(bad.batch(0, 1), Contains("sample 4's x has shape [3], but sample 3's is [2]"));
    // an exception in get() reaches the caller of batch()
    auto failing = data::make_source(4, [](std::size_t i) -> data::Sample {
        if (i == 3) throw xgrad::IoError("cannot read sample 3");
        return {xt::xarray<float>{1.0f}, xt::xarray<float>(0.0f)};
    });
    const data::DataLoader f(failing, {.batch_size = 2, .shuffle = false, .prefetch = true});
    f.batch(0, 0);
    REQUIRE_THROWS_WITH(f.batch(0, 1), Contains("cannot read sample 3"));
    REQUIRE_THROWS_AS(data::DataLoader(std::shared_ptr<const data::Source>(), {}), xgrad::ValueError);
    REQUIRE_THROWS_AS(data::DataLoader(data::make_source(0, [](std::size_t) { return data::Sample{}; }), {}),
                      xgrad::ValueError);
    REQUIRE_THROWS_AS(data::make_source(3, nullptr), xgrad::ValueError);
}

TEST_CASE("read_csv: numbers with a label column, header, delimiter; errors name the line and column", "[data][io]") {
    const auto path = temp_path("read.csv");
    std::ofstream(path) << "a,b,label\n1,2.5,0\n\n-3,4e1,1\r\n";
    const auto d = data::read_csv(path, {.header = true});
    CHECK(array_diff(d.x.value(), xgrad_test::array({2, 2}, {1, 2.5, -3, 40})) == "");
    CHECK(array_diff(d.y.value(), xt::xarray<float>{0, 1}) == "");
    const auto first = data::read_csv(path, {.header = true, .label_column = 0});
    CHECK(array_diff(first.x.value(), xgrad_test::array({2, 2}, {2.5, 0, 40, 1})) == "");
    const auto all = data::read_csv(path, {.header = true, .labels = false});
    CHECK(all.x.shape() == Shape{2, 3});
    CHECK(!all.y.defined());
    std::ofstream(path) << "1;2\n3;4\n";
    CHECK(data::read_csv(path, {.delimiter = ';'}).x.shape() == Shape{2, 1});
    auto refused = [&](const std::string& text, const std::string& message, data::CsvOptions o = {}) {
        std::ofstream(path) << text;
        INFO(text);
        REQUIRE_THROWS_AS(data::read_csv(path, o), xgrad::IoError);
        REQUIRE_THROWS_WITH(data::read_csv(path, o), Contains(message));
    };
    refused("1,2\n3,x\n", ":2: column 2 ('x') is not a number");
    refused("1,2\n3,\n", ":2: column 2 ('') is not a number");
    refused("1,2\n3,4,5\n", ":2: 3 columns, the first row has 2");
    refused("1,2\n", "label column 2 of 2 columns", {.label_column = 2});
    refused("", "holds no rows");
    refused("h\n", "holds no rows", {.header = true});
    refused("1\n2\n", "one column");
    refused("1,1e99\n", "is not a number");
    REQUIRE_THROWS_WITH(data::read_csv(temp_path("missing.csv")), Contains("cannot open"));
    std::remove(path.c_str());
}

TEST_CASE("ImageFolder: one directory per class, sorted; batches equal the images as written; errors name files",
          "[data][png]") {
    namespace fs = std::filesystem;
    const fs::path root = temp_path("image_folder");
    fs::remove_all(root);
    // class "b" sorts after "a"; a non-image file and a stray top-level file are ignored
    const auto images = numbered_images();  // 40 images 5x6x2; keep one channel, scaled into [0, 1]
    xt::xarray<float> x = xt::view(images.x.value(), xt::all(), xt::all(), xt::all(), xt::range(0, 1));
    x = xt::round(x / 480.0f * 255.0f) / 255.0f;
    for (const char* c : {"b", "a", "empty"}) fs::create_directories(root / c);
    std::ofstream(root / "README.txt") << "not a class";
    std::ofstream(root / "a" / "notes.txt") << "not an image";
    for (std::size_t i = 0; i < 6; ++i) {
        const fs::path file = root / (i < 4 ? "a" : "b") / fmt::format("img{}.{}", i, i == 5 ? "PNG" : "png");
        xgrad::io::save_png(file.string(), xt::xarray<float>(xt::view(x, i)));
    }
    const auto folder = std::make_shared<data::ImageFolder>(root.string());
    CHECK(folder->classes() == std::vector<std::string>{"a", "b", "empty"});
    CHECK(folder->labels() == std::vector<std::size_t>{0, 0, 0, 0, 1, 1});
    CHECK(folder->name(4) == (root / "b" / "img4.png").string());
    const data::DataLoader loader(folder, {.batch_size = 6, .shuffle = false, .prefetch = true});
    const auto b = loader.batch(0, 0);
    CHECK(array_diff(b.x.value(), xt::xarray<float>(xt::view(x, xt::range(0, 6))), 0, 0) == "");
    CHECK(array_diff(b.y.value(), xt::xarray<float>{0, 0, 0, 0, 1, 1}) == "");
    CHECK(data::ImageFolder(root.string(), {.channels = 3}).get(0).x.shape() == std::vector<std::size_t>{5, 6, 3});
    CHECK(data::ImageFolder(root.string(), {.extensions = {".txt"}}).size() == 1);
    // an image of another size: ShapeError naming both files
    xgrad::io::save_png((root / "b" / "img9.png").string(), xt::zeros<float>({5, 7, 1}));
    const data::DataLoader ragged(std::make_shared<data::ImageFolder>(root.string()), {.batch_size = 7, .shuffle = false});
    REQUIRE_THROWS_AS(ragged.batch(0, 0), xgrad::ShapeError);
    REQUIRE_THROWS_WITH(ragged.batch(0, 0), Contains("img9.png)'s x has shape [5, 7, 1]") && Contains("img0.png"));
    // a damaged file: IoError naming it
    std::ofstream(root / "b" / "img9.png", std::ios::binary) << "\x89PNG\r\n\x1a\n broken";
    REQUIRE_THROWS_WITH(ragged.batch(0, 0), Contains("img9.png"));
    REQUIRE_THROWS_AS(ragged.batch(0, 0), xgrad::IoError);
    REQUIRE_THROWS_WITH(data::ImageFolder((root / "missing").string()), Contains("is not a directory"));
    REQUIRE_THROWS_WITH(data::ImageFolder((root / "empty").string()), Contains("no class subdirectories"));
    fs::create_directories(root / "c" / "d");
    REQUIRE_THROWS_WITH(data::ImageFolder((root / "c").string()), Contains("hold no .png files"));
    REQUIRE_THROWS_AS(data::ImageFolder(root.string(), {.channels = 7}), xgrad::ValueError);
    fs::remove_all(root);
}
