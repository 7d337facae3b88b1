// gradcheck: runs every registered op's gradient-check cases, first and second order (gradcheck
// and gradgradcheck), and reports one row per case.
//
//   gradcheck                 all cases          gradcheck --list     op names and case counts
//   gradcheck --op conv2d     one op's cases     gradcheck --seed 7   other random inputs
//   gradcheck --order 2       second-order cases only

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "xgrad/gradcheck.hpp"

int main(int argc, char** argv) {
    CLI::App app{"Checks every op's backward against central differences in float64."};
    bool list = false;
    std::string op;
    std::uint64_t seed = 1;
    int only_order = 0;
    app.add_flag("--list", list, "List the registered ops and their number of cases");
    app.add_option("--op", op, "Check only this op");
    app.add_option("--seed", seed, "Seed of the random inputs and output gradients");
    app.add_option("--order", only_order, "Run only first-order (1) or second-order (2) cases")
        ->check(CLI::IsMember({1, 2}));
    CLI11_PARSE(app, argc, argv);

    const auto& cases = xgrad::gradcheck_cases();
    std::map<std::string, int> per_op, second;
    std::vector<std::string> order;
    for (const auto& c : cases) {
        if (per_op[c.op]++ == 0) order.push_back(c.op);
        second[c.op] += c.order == 2;
    }

    if (list) {
        for (const auto& name : order)
            fmt::print("{:<20} {:>3} cases ({} first order, {} second order)\n", name, per_op[name],
                       per_op[name] - second[name], second[name]);
        return 0;
    }
    if (!op.empty() && !per_op.count(op)) {
        fmt::print(stderr, "gradcheck: no op named '{}'; --list shows them\n", op);
        return 2;
    }

    int passed = 0, failed = 0;
    fmt::print("{:<20} {:<50} {:>5} {:>11} {:>11}  {}\n", "op", "case", "order", "max abs err", "max rel err",
               "result");
    for (const auto& c : cases) {
        if (!op.empty() && c.op != op) continue;
        if (only_order && c.order != only_order) continue;
        const auto r = c.run(seed);
        fmt::print("{:<20} {:<50} {:>5} {:>11.2e} {:>11.2e}  {}\n", c.op, c.name, c.order, r.max_abs_err,
                   r.max_rel_err, r.passed ? "PASS" : "FAIL");
        if (!r.passed) fmt::print("    {}\n", r.message);
        (r.passed ? passed : failed)++;
        std::fflush(stdout);
    }
    fmt::print("{} passed, {} failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
