// Golden SFace embeddings from OpenCV's own FaceRecognizerSF, for tests/identity_sface.rs.
//
// What it does: for each sample still below, with the 5 face points dfl's YuNet finds on it
// (rounded to 0.01 px and fixed here, so the golden does not depend on the detector), runs
// FaceRecognizerSF::alignCrop + feature on $DFL_HOME/models/face_recognition_sface_2021dec_fp32.onnx
// and writes the L2-normalised 128-d embedding to tests/data/golden/sface/expected.json.
// Deterministic: same inputs and OpenCV version give the same file.
//
// needs: Debian libopencv-dev 4.6 (objdetect's FaceRecognizerSF), g++, pkg-config.
// usage: g++ -O2 scripts/golden/sface_opencv.cpp -o /tmp/sface_opencv $(pkg-config --cflags --libs opencv4)
//        /tmp/sface_opencv > tests/data/golden/sface/expected.json
#include <opencv2/imgcodecs.hpp>
#include <opencv2/objdetect/face.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

struct Case {
    const char* sample;
    float points[10];  // right eye, left eye, nose, right mouth, left mouth (x, y)
};

static const Case CASES[] = {
    {"obama.jpg", {439.89, 213.67, 555.47, 213.78, 496.26, 267.06, 440.41, 318.23, 546.99, 320.90}},
    {"obama2.jpg", {244.43, 375.85, 367.60, 384.14, 276.15, 455.48, 244.96, 523.36, 349.90, 531.41}},
    {"obama3.jpg", {737.05, 378.08, 867.98, 381.07, 814.25, 444.69, 737.53, 509.05, 850.96, 511.98}},
    {"biden.jpg", {518.96, 325.63, 668.77, 330.10, 602.31, 409.65, 509.80, 466.72, 638.98, 471.63}},
    {"astronaut.png", {201.64, 105.54, 245.32, 104.87, 221.00, 127.22, 204.07, 145.38, 242.38, 145.36}},
    {"messi5.jpg", {239.60, 107.92, 252.65, 107.62, 249.27, 116.05, 240.84, 122.91, 251.51, 122.58}},
};

int main() {
    const char* env = std::getenv("DFL_HOME");
    std::string home = env && *env ? env : std::string(std::getenv("HOME")) + "/.cache/dfl";
    auto rec = cv::FaceRecognizerSF::create(
        home + "/models/face_recognition_sface_2021dec_fp32.onnx", "");
    std::printf("{\n  \"opencv\": \"%s\",\n  \"cases\": [\n", CV_VERSION);
    const size_t n = sizeof(CASES) / sizeof(CASES[0]);
    for (size_t c = 0; c < n; c++) {
        cv::Mat img = cv::imread(home + "/samples/" + CASES[c].sample, cv::IMREAD_COLOR);
        if (img.empty()) {
            std::fprintf(stderr, "%s/samples/%s is missing; run scripts/setup.sh\n", home.c_str(),
                         CASES[c].sample);
            return 1;
        }
        cv::Mat face(1, 15, CV_32F, cv::Scalar(0));
        for (int i = 0; i < 10; i++) face.at<float>(0, 4 + i) = CASES[c].points[i];
        cv::Mat crop, feature, unit;
        rec->alignCrop(img, face, crop);
        rec->feature(crop, feature);
        cv::normalize(feature.reshape(1, 1), unit);
        std::printf("    {\"sample\": \"%s\", \"points\": [", CASES[c].sample);
        for (int i = 0; i < 5; i++)
            std::printf("%s[%.2f, %.2f]", i ? ", " : "", CASES[c].points[2 * i],
                        CASES[c].points[2 * i + 1]);
        std::printf("],\n     \"embedding\": [");
        for (int i = 0; i < unit.cols; i++)
            std::printf("%s%.7g", i ? ", " : "", unit.at<float>(0, i));
        std::printf("]}%s\n", c + 1 < n ? "," : "");
    }
    std::printf("  ]\n}\n");
    return 0;
}
