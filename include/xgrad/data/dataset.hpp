#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <xtensor/xoperation.hpp>

#include "xgrad/tensor.hpp"

namespace xgrad::data {

/// An IDX array (the format of MNIST and Fashion-MNIST): its shape and its unsigned bytes.
struct IdxArray {
    Shape shape;
    std::vector<std::uint8_t> values;
};

/// Reads an IDX file of unsigned bytes (type 0x08), gzip-compressed or raw. Throws IoError
/// naming the file when it is missing, truncated, longer than its header says, or not IDX.
IdxArray read_idx(const std::string& path);

/// Samples x [N, ...] with targets y [N] (class indices) or [N, K], in precision T:
/// `Dataset` (float) or `Dataset64` (`load_fashion_mnist(...).cast<double>()`).
template <class T>
struct basic_dataset {
    basic_tensor<T> x, y;
    std::size_t size() const { return x.defined() ? x.shape()[0] : 0; }
    /// Samples [begin, end) as a new dataset (copies). Throws ValueError for a bad range.
    basic_dataset slice(std::size_t begin, std::size_t end) const;
    /// The same samples in precision U (copies).
    template <class U>
    basic_dataset<U> cast() const {
        auto convert = [](const basic_tensor<T>& t) {
            return t.defined() ? basic_tensor<U>(xt::xarray<U>(xt::cast<U>(t.value()))) : basic_tensor<U>();
        };
        return {convert(x), convert(y)};
    }
};
using Dataset = basic_dataset<float>;
using Dataset64 = basic_dataset<double>;

/// One sample of a Source: x in the sample's own shape ([H, W, C], [F], ...) and y a class
/// index (a 0-D array) or a target vector [K].
template <class T>
struct basic_sample {
    xt::xarray<T> x, y;
};
using Sample = basic_sample<float>;

/// Data that is not an in-memory tensor: images decoded on demand, a database, generated
/// samples. Subclass it (or use make_source) and give it to a DataLoader, which batches,
/// shuffles, shards, seeds and augments it exactly as an in-memory Dataset of the same
/// samples. With prefetch, get() runs on the loader's worker thread: it must not touch state
/// the training loop changes (xgrad's random generator included; derive any randomness from
/// i, as the loader's augmentation does from (seed, epoch, sample)).
///
/// ```
/// struct Noise : xgrad::data::Source {
///     std::size_t size() const override { return 1000; }
///     xgrad::data::Sample get(std::size_t i) const override {
///         return {xt::xarray<float>::from_shape({8}), xt::xarray<float>(float(i % 2))};
///     }
/// };
/// xgrad::data::DataLoader loader(std::make_shared<Noise>(), {.batch_size = 32, .prefetch = true});
/// ```
template <class T>
class basic_source {
public:
    virtual ~basic_source() = default;
    /// Number of samples.
    virtual std::size_t size() const = 0;
    /// Sample i < size(). Every sample must have the same shapes.
    virtual basic_sample<T> get(std::size_t i) const = 0;
    /// What sample i is (a file name), for error messages; "" when it has no name.
    virtual std::string name(std::size_t i) const {
        (void)i;
        return {};
    }
};
using Source = basic_source<float>;
using Source64 = basic_source<double>;

/// A Source of `size` samples made by `get(i)` (float unless T is given). Throws ValueError
/// for an empty function.
template <class T = float>
std::shared_ptr<basic_source<T>> make_source(std::size_t size,
                                             std::function<basic_sample<std::type_identity_t<T>>(std::size_t)> get);

struct ImageFolderOptions {
    /// 0: the files' own (1 gray, 3 RGB, ...); 1, 2, 3 or 4 converts as io::load_png does.
    std::size_t channels = 0;
    /// File names that count as images (compared without case).
    std::vector<std::string> extensions{".png"};
};

/// Images in one subdirectory per class (`root/cat/001.png`, `root/dog/a.png`, as
/// torchvision's ImageFolder): classes sorted by name are labels 0, 1, ...; files sorted by
/// name within each. Each get(i) decodes one PNG (io::load_png) into x [H, W, C] in [0, 1]
/// with y its label; the DataLoader stacks them, so every image must have the same size
/// (ShapeError naming the file otherwise). The constructor lists files only and throws
/// IoError for a missing directory, one without class subdirectories or without images.
///
/// ```
/// auto train = std::make_shared<xgrad::data::ImageFolder>("pets/train");
/// model.fit(train, {.epochs = 5, .prefetch = true});
/// ```
class ImageFolder : public basic_source<float> {
public:
    explicit ImageFolder(const std::string& root, ImageFolderOptions options = {});
    std::size_t size() const override { return files_.size(); }
    Sample get(std::size_t i) const override;
    std::string name(std::size_t i) const override { return i < files_.size() ? files_[i] : std::string(); }
    /// The class names, in label order.
    const std::vector<std::string>& classes() const { return classes_; }
    /// Each image's label, in sample order.
    const std::vector<std::size_t>& labels() const { return labels_; }

private:
    ImageFolderOptions options_;
    std::vector<std::string> classes_, files_;
    std::vector<std::size_t> labels_;
};

struct CsvOptions {
    char delimiter = ',';
    bool header = false;                        ///< skip the first line
    std::optional<std::size_t> label_column{};  ///< the target column (default: the last)
    bool labels = true;                         ///< false: every column is a feature, y is empty
};

/// Reads a CSV file of numbers into a Dataset: x [rows, features] and y [rows] from the label
/// column. Blank lines are skipped. Throws IoError naming the file, line and column for a
/// value that is not a number, a row with another number of columns, or an empty file.
Dataset read_csv(const std::string& path, const CsvOptions& options = {});

enum class Split { train, test };

/// Where Debian's dataset-fashion-mnist package installs Fashion-MNIST.
inline const std::string kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

/// The MNIST file layout in `dir` ({train,t10k}-{images-idx3,labels-idx1}-ubyte, with or
/// without .gz): images as float [N, 28, 28, 1] scaled to [0, 1], labels as float class
/// indices [N]. Throws IoError naming the file (missing, corrupt, or image and label counts
/// that disagree).
Dataset load_mnist_format(const std::string& dir, Split split);
/// Fashion-MNIST (10 classes of clothing) from kFashionMnistDir unless told otherwise.
Dataset load_fashion_mnist(Split split, const std::string& dir = kFashionMnistDir);
/// The names of Fashion-MNIST's 10 classes, by label.
const std::vector<std::string>& fashion_mnist_classes();

/// Random image augmentation a DataLoader applies to every sample of x [N, H, W, C] it returns,
/// drawn from (seed, epoch, the sample's index in the dataset) alone: a resumed run, another
/// batch size or another sharding sees the same augmented samples. Give it to the training
/// loader only (Sequential::fit does); normalise both sets once with normalize().
/// `DataLoader loader(train, {.batch_size = 64, .seed = 1, .augment = {.crop_padding = 2,
/// .horizontal_flip = true}})`.
struct Augment {
    /// Pads each side with this many zeros, then crops H x W back at an offset drawn uniformly
    /// in [0, 2·crop_padding] per axis (torchvision's RandomCrop(size, padding)); 0 = off.
    std::size_t crop_padding = 0;
    /// Mirrors left-right with probability 1/2 (after the crop).
    bool horizontal_flip = false;
    bool enabled() const { return crop_padding > 0 || horizontal_flip; }
};

struct LoaderOptions {
    std::size_t batch_size = 32;
    bool shuffle = true;
    std::uint64_t seed = 0;   ///< with the epoch number, fixes every epoch's order
    bool drop_last = false;   ///< skip a last batch smaller than batch_size
    /// Data-parallel training: this process's index among `shards` processes (MPI rank and
    /// world size). A global batch holds batch_size × shards samples of the common epoch
    /// order, and shard r reads the r-th of its `shards` near-equal parts, so the processes see
    /// disjoint samples and together exactly what one process with that global batch would.
    /// Every shard has the same number of batches; when the epoch's last global batch has fewer
    /// samples than shards, those (at most shards - 1) are left out.
    std::size_t shard = 0;
    std::size_t shards = 1;
    /// Random augmentation of the returned samples; none by default.
    Augment augment{};
    /// Prepare the next batch (the next index, or batch 0 of the next epoch) on a worker
    /// thread while the caller trains on this one. A request for another batch just
    /// computes it: results are the same either way.
    bool prefetch = false;
};

/// One batch: inputs and targets.
template <class T>
struct basic_batch {
    basic_tensor<T> x, y;
};
using Batch = basic_batch<float>;

/// Cuts a dataset into batches, in an order reshuffled for every epoch from (seed, epoch),
/// so that an epoch's order is the same in a resumed run.
///
/// ```
/// xgrad::data::DataLoader loader(train, {.batch_size = 64, .seed = 1});
/// for (std::size_t i = 0; i < loader.size(); ++i) { auto b = loader.batch(epoch, i); ... }
/// ```
template <class T>
class basic_data_loader {
public:
    using Dataset = basic_dataset<T>;
    using Batch = basic_batch<T>;

    /// Throws ValueError for batch_size 0, an empty dataset or shard >= shards, ShapeError when
    /// x and y hold different numbers of samples.
    basic_data_loader(Dataset data, LoaderOptions options);
    /// Batches of a Source's samples (stacked: x [n, ...], y [n] or [n, K]). Throws ValueError
    /// as above and for a null source; batch() throws ShapeError naming the sample whose
    /// shapes differ from the first's.
    basic_data_loader(std::shared_ptr<const basic_source<T>> source, LoaderOptions options);
    /// Copies share the data, not a pending prefetch.
    basic_data_loader(const basic_data_loader& other);
    basic_data_loader& operator=(const basic_data_loader& other);
    ~basic_data_loader();
    /// Batches per epoch.
    std::size_t size() const;
    /// Batch i of epoch `epoch`. Throws ValueError when i >= size().
    Batch batch(std::size_t epoch, std::size_t i) const;
    /// The in-memory dataset (empty for a Source's loader).
    const Dataset& dataset() const { return data_; }
    const LoaderOptions& options() const { return options_; }

private:
    struct Prefetch;
    const std::vector<std::size_t>& order(std::size_t epoch) const;
    std::size_t samples() const;
    Batch make_batch(std::size_t epoch, std::size_t i) const;
    void check() const;

    Dataset data_;
    std::shared_ptr<const basic_source<T>> source_;
    LoaderOptions options_;
    mutable std::unique_ptr<Prefetch> prefetch_;
    mutable std::size_t order_epoch_ = static_cast<std::size_t>(-1);
    mutable std::vector<std::size_t> order_;
};
using DataLoader = basic_data_loader<float>;
using DataLoader64 = basic_data_loader<double>;

/// The dataset with x [N, ..., C] normalised per channel, (x - mean[c]) / std[c] (a copy; y
/// unchanged). Fashion-MNIST's statistics: mean 0.2860, std 0.3530. Throws ValueError unless
/// mean and std have C entries and every std is positive and finite.
template <class T>
basic_dataset<T> normalize(const basic_dataset<T>& data, const std::vector<double>& mean, const std::vector<double>& std);

/// Copies rows `indices` of x (any rank, rows along axis 0) into a new [len, ...] tensor.
template <class T>
basic_tensor<T> take_rows(const basic_tensor<T>& x, const std::vector<std::size_t>& indices);

}  // namespace xgrad::data
